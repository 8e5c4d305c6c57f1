using Apb.Backends;
using Apb.Checkpoints;
using Apb.Comms;
using Apb.Model;
using Apb.Strategies.Apb;

namespace Apb.Strategies.Star;

/// <summary>
/// Star Attention's prefill (approximate): ranks r >= 1 put the plain first block in front of their own block as an
/// anchor (positions 0..l_b-1) and attend to [anchor; block] locally; no communication. Rank 0's block is the first
/// block, so it runs plain causal attention. The anchor never enters the cache.
/// </summary>
public sealed class StarAttention(IBackend backend, ModelConfig config, RopeTable rope, SequencePlan plan, ICommunicator comm)
    : SequenceParallelAttention(backend, config, rope, plan, comm)
{
    public override void Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor output)
    {
        int a = Plan.AnchorRows(Rank);
        if (q.Rows != Plan.LocalRows(Rank)) throw new ArgumentException($"star: rank {Rank} got {q.Rows} rows, the plan says {Plan.LocalRows(Rank)}");
        Rotate(q, k, Plan.LocalPositions(Rank));
        using (Measure("attention"))
            CountAttention(AnchoredAttention.Run(B, Heads, KvHeads, q, k, v, a, 0, null, null, output));
        CacheOwnBlock(layer, k, v, a);
    }
}
