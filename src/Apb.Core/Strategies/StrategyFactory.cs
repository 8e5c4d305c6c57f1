using Apb.Backends;
using Apb.Checkpoints;
using Apb.Comms;
using Apb.Strategies.Apb;
using Apb.Strategies.Ring;
using Apb.Strategies.Star;
using Apb.Strategies.Ulysses;

namespace Apb.Strategies;

/// <summary>One rank's prefill attention for a plan: the one place that maps a strategy to its class.</summary>
public static class StrategyFactory
{
    /// <param name="noveltyWeight">APB's novelty term's weight against the query term or the heads (0: the term is off;
    /// <see cref="PrefillPlan.NoveltyTermWeight"/>)</param>
    /// <param name="retaining">APB's trained scorer on this rank's backend, for <see cref="ScorerKind.Retaining"/>; else null</param>
    /// <param name="kvDType">how the rank's KV caches store their rows (--kv-cache-dtype)</param>
    /// <param name="passingFromLayer">APB passes nothing below this layer (<see cref="StrategyOptions.PassingFromLayer"/>)</param>
    public static SequenceParallelAttention Create(StrategyKind kind, IBackend backend, ModelConfig config, RopeTable rope,
        SequencePlan plan, ICommunicator comm, float noveltyWeight, RetainingHeadScorer? retaining, bool overlap,
        KvCacheDType kvDType = KvCacheDType.Auto, int passingFromLayer = 0) => kind switch
    {
        StrategyKind.Ring => new RingAttention(backend, config, rope, plan, comm) { Overlap = overlap, KvDType = kvDType },
        StrategyKind.Zigzag => new ZigzagRingAttention(backend, config, rope, plan, comm) { Overlap = overlap, KvDType = kvDType },
        StrategyKind.Ulysses => new UlyssesAttention(backend, config, rope, plan, comm) { KvDType = kvDType },
        StrategyKind.Star => new StarAttention(backend, config, rope, plan, comm) { KvDType = kvDType },
        // Balanced APB on one rank has the contiguous plan (no anchor, nothing passed: full attention), which ApbAttention runs.
        StrategyKind.Apb or StrategyKind.ApbBalanced when plan.Layout == SequenceLayout.Contiguous =>
            new ApbAttention(backend, config, rope, plan, comm, retaining, noveltyWeight) { Overlap = overlap, KvDType = kvDType, PassingFromLayer = passingFromLayer },
        StrategyKind.ApbBalanced =>
            new BalancedApbAttention(backend, config, rope, plan, comm, retaining, noveltyWeight) { Overlap = overlap, KvDType = kvDType, PassingFromLayer = passingFromLayer },
        _ => throw new ArgumentException($"{kind} is not a sequence-parallel strategy"),
    };
}
