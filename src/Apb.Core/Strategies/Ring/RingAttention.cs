using Apb.Attention;
using Apb.Backends;
using Apb.Checkpoints;
using Apb.Comms;
using Apb.Model;

namespace Apb.Strategies.Ring;

/// <summary>
/// Ring attention (exact), the part both layouts share. Each rank first attends its own block causally, then passes what
/// it holds to the next rank H-1 times; at step s it holds rank j = (r - s) mod H's block, which the layout decides how
/// its queries see (<see cref="AttendHeld"/>); partial results are merged by LSE. K and V travel as one message of
/// [2 l_b, kv_dim] (K rows then V rows), double-buffered: the transfer that brings step s+1's block is started before
/// the attention on step s's block (the own block for s = 0) and completed after it, so on a GPU it runs during that
/// attention. The buffer being sent is only read meanwhile, and the one being received into is read only after the
/// transfer completes (and written by it only after the attention that last read it: a transfer starts after the
/// compute queued before it). With <see cref="SequenceParallelAttention.Overlap"/> off each transfer completes at once.
/// </summary>
public abstract class RingAttentionBase(IBackend backend, ModelConfig config, RopeTable rope, SequencePlan plan, ICommunicator comm)
    : SequenceParallelAttention(backend, config, rope, plan, comm)
{
    protected abstract SequenceLayout Layout { get; }

    /// <summary>Attends the local queries to rank <paramref name="owner"/>'s block (hk, hv) and merges into output/lse.</summary>
    protected abstract void AttendHeld(int owner, Tensor q, Tensor hk, Tensor hv, Tensor output, Tensor lse, Tensor part, Tensor partLse);

    public override void Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor output)
    {
        if (Plan.Layout != Layout) throw new ArgumentException($"{GetType().Name} needs a {Layout} plan, got {Plan.Layout}");
        int lb = Plan.BlockLength;
        if (q.Rows != lb) throw new ArgumentException($"ring: rank {Rank} got {q.Rows} rows, the plan says {lb}");
        Rotate(q, k, Plan.Positions(Rank));
        CacheOwnBlock(layer, k, v, 0);

        Tensor? held = null, next = null;
        IPendingTransfer? inFlight = null;
        if (Ranks > 1)
        {
            held = Buffer("held", 2 * lb, C.KvDim);
            next = Buffer("next", 2 * lb, C.KvDim);
            using (Measure("other"))
            {
                B.Copy(k, 0, 0, held, 0, 0, lb, C.KvDim);
                B.Copy(v, 0, 0, held, lb, 0, lb, C.KvDim);
            }
            inFlight = Pass(held, next, 1);
        }

        // The local rows are in position order in both layouts, so plain causal masking over them is exact.
        var lse = Buffer("lse", lb, Heads, fp32: true);
        using (Measure("attention"))
        {
            B.Attention(q, k, v, Heads, KvHeads, AttentionMask.Causal, output, lse);
            CountAttention(FullAttention.CausalPairs(lb, lb));
        }
        if (Ranks == 1) return;

        var part = Buffer("part", lb, C.QDim);
        var partLse = Buffer("partLse", lb, Heads, fp32: true);
        for (int s = 1; s < Ranks; s++)
        {
            inFlight!.Complete();
            (held, next) = (next, held);
            // next now holds step s-1's block: its send has completed, and the attention that read it is queued before
            // the transfer started here, which therefore overwrites it only after that attention.
            inFlight = s + 1 < Ranks ? Pass(held!, next!, s + 1) : null;
            int owner = (Rank - s + Ranks) % Ranks;
            using var _ = Measure("attention");
            AttendHeld(owner, q, held!.RowSlice(0, lb), held.RowSlice(lb, lb), output, lse, part, partLse);
        }
    }

    /// <summary>Sends what this rank holds to the next rank and receives step <paramref name="step"/>'s block from the previous one.</summary>
    IPendingTransfer Pass(Tensor send, Tensor recv, int step) =>
        Started(Comm.StartSendRecv(send, (Rank + 1) % Ranks, recv, (Rank - 1 + Ranks) % Ranks, $"ring step {step}"));
}

/// <summary>
/// Contiguous layout: queries see an earlier block whole and a later block not at all (it is only passed on), so rank
/// H-1 does H times the causal work of rank 0.
/// </summary>
public sealed class RingAttention(IBackend backend, ModelConfig config, RopeTable rope, SequencePlan plan, ICommunicator comm)
    : RingAttentionBase(backend, config, rope, plan, comm)
{
    protected override SequenceLayout Layout => SequenceLayout.Contiguous;

    protected override void AttendHeld(int owner, Tensor q, Tensor hk, Tensor hv, Tensor output, Tensor lse, Tensor part, Tensor partLse)
    {
        if (owner > Rank) return;
        B.Attention(q, hk, hv, Heads, KvHeads, AttentionMask.None, part, partLse);
        B.MergeAttention(output, lse, part, partLse, Heads);
        CountAttention((double)q.Rows * q.Rows);
    }
}
