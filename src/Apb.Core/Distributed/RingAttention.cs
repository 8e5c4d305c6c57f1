using Apb.Backends;
using Apb.Checkpoints;
using Apb.Model;

namespace Apb.Distributed;

/// <summary>
/// Ring attention (exact), contiguous layout. Each rank starts with its own block's K/V and passes what it holds to the
/// next rank H-1 times; at step s it holds block j = (r - s) mod H. Its queries see an earlier block whole, their own
/// block causally and later blocks not at all; the partial results are merged by LSE. K and V travel as one message of
/// [2 l_b, kv_dim] (K rows then V rows). On a GPU the send of step s overlaps the attention of step s; here they alternate.
/// </summary>
public sealed class RingAttention(IBackend backend, ModelConfig config, RopeTable rope, SequencePlan plan, ICommunicator comm)
    : SequenceParallelAttention(backend, config, rope, plan, comm)
{
    public override void Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor output)
    {
        int lb = Plan.BlockLength;
        if (q.Rows != lb) throw new ArgumentException($"ring: rank {Rank} got {q.Rows} rows, the plan says {lb}");
        Rotate(q, k, Plan.Positions(Rank));
        CacheOwnBlock(layer, k, v, 0);

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
            if (j > Rank) continue; // a later block: invisible to every query here, only passed on
            using var _ = Measure("attention");
            B.Attention(q, held.RowSlice(0, lb), held.RowSlice(lb, lb), Heads, KvHeads, AttentionMask.None, part, partLse);
            B.MergeAttention(output, lse, part, partLse, Heads);
            CountAttention((double)lb * lb);
        }
    }
}
