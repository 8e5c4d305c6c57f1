using Apb.Backends;
using Apb.Checkpoints;
using Apb.Comms;
using Apb.Model;

namespace Apb.Strategies.Ring;

/// <summary>
/// Ring attention (exact) on the zigzag layout: rank r holds chunks r and 2H-1-r. When the ring brings rank j's pair
/// (chunks j and 2H-1-j):
///   j &lt; r: all local queries see chunk j whole, and chunk 2H-1-j not at all (it comes after both local chunks);
///   j &gt; r: only the late local chunk 2H-1-r has queries after both of j's chunks, and it sees them whole.
/// Every step is therefore l_c x 2 l_c unmasked pairs on every rank: the causal work is balanced, unlike the contiguous
/// ring where rank H-1 does H times the work of rank 0.
/// </summary>
public sealed class ZigzagRingAttention(IBackend backend, ModelConfig config, RopeTable rope, SequencePlan plan, ICommunicator comm)
    : RingAttentionBase(backend, config, rope, plan, comm)
{
    protected override SequenceLayout Layout => SequenceLayout.Zigzag;

    protected override void AttendHeld(int owner, Tensor q, Tensor hk, Tensor hv, Tensor output, Tensor lse, Tensor part, Tensor partLse)
    {
        int lc = Plan.ChunkLength;
        if (owner < Rank)
        {
            B.Attention(q, hk.RowSlice(0, lc), hv.RowSlice(0, lc), Heads, KvHeads, AttentionMask.None, part, partLse);
            B.MergeAttention(output, lse, part, partLse, Heads);
        }
        else
        {
            Tensor p = part.RowSlice(0, lc), pl = partLse.RowSlice(0, lc);
            B.Attention(q.RowSlice(lc, lc), hk, hv, Heads, KvHeads, AttentionMask.None, p, pl);
            B.MergeAttention(output.RowSlice(lc, lc), lse.RowSlice(lc, lc), p, pl, Heads);
        }
        CountAttention(2.0 * lc * lc);
    }
}
