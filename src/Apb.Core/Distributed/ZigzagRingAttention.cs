using Apb.Backends;
using Apb.Checkpoints;
using Apb.Model;

namespace Apb.Distributed;

/// <summary>
/// Ring attention (exact) on the zigzag layout: rank r holds chunks r and 2H-1-r. When the ring brings rank j's pair
/// (chunks j and 2H-1-j):
///   j &lt; r: all local queries see chunk j whole, and chunk 2H-1-j not at all (it comes after both local chunks);
///   j &gt; r: only the late local chunk 2H-1-r has queries after both of j's chunks, and it sees them whole.
/// Every step is therefore l_c x 2 l_c unmasked pairs on every rank: the causal work is balanced, unlike the contiguous
/// ring where rank H-1 does H times the work of rank 0.
/// </summary>
public sealed class ZigzagRingAttention(IBackend backend, ModelConfig config, RopeTable rope, SequencePlan plan, ICommunicator comm)
    : SequenceParallelAttention(backend, config, rope, plan, comm)
{
    public override void Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor output)
    {
        if (Plan.Layout != SequenceLayout.Zigzag) throw new ArgumentException("zigzag ring attention needs a zigzag plan");
        int lb = Plan.BlockLength, lc = Plan.ChunkLength;
        if (q.Rows != lb) throw new ArgumentException($"zigzag: rank {Rank} got {q.Rows} rows, the plan says {lb}");
        Rotate(q, k, Plan.Positions(Rank));
        CacheOwnBlock(layer, k, v, 0);

        // The two local chunks are in position order, so plain causal masking over [chunk r; chunk 2H-1-r] is exact.
        var lse = Buffer("lse", lb, Heads, fp32: true);
        using (Measure("attention"))
        {
            B.Attention(q, k, v, Heads, KvHeads, AttentionMask.Causal, output, lse);
            CountAttention(FullAttention.CausalPairs(lb, lb));
        }
        if (Ranks == 1) return;

        var held = Buffer("held", 2 * lb, C.KvDim);
        var next = Buffer("next", 2 * lb, C.KvDim);
        var part = Buffer("part", lb, C.QDim);
        var partLse = Buffer("partLse", lb, Heads, fp32: true);
        using (Measure("other"))
        {
            B.Copy(k, 0, 0, held, 0, 0, lb, C.KvDim);
            B.Copy(v, 0, 0, held, lb, 0, lb, C.KvDim);
        }
        for (int s = 1; s < Ranks; s++)
        {
            Comm.SendRecv(held, (Rank + 1) % Ranks, next, (Rank - 1 + Ranks) % Ranks);
            (held, next) = (next, held);
            int j = (Rank - s + Ranks) % Ranks;
            Tensor hk = held.RowSlice(0, lb), hv = held.RowSlice(lb, lb);
            using var _ = Measure("attention");
            if (j < Rank)
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
}
