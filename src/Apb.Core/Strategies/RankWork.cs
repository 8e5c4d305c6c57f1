using Apb.Attention;

namespace Apb.Strategies;

/// <summary>
/// One rank's prefill work per layer, counted from a plan (no model, no device): what the strategies' attention calls
/// see and what they move. The pairs are exactly what each strategy counts into its profile (attention FLOPs are 4 x
/// pairs x heads x head_dim), pad rows included, as the calls include them.
/// </summary>
/// <param name="LocalRows">rows the rank runs through the projections and the MLP: [anchor; block]</param>
/// <param name="Pairs">visible (query, key) pairs of its attention calls</param>
/// <param name="PassingRead">passing rows per KV head its attention reads (APB; summed over its chunks)</param>
/// <param name="Received">K/V rows per KV head it receives: other ranks' selections (APB), or the ring's blocks</param>
/// <param name="Scored">rows it scores to select passing rows (APB)</param>
public sealed record RankWork(int Rank, long LocalRows, double Pairs, long PassingRead, long Received, long Scored)
{
    /// <summary>Rank's work under <paramref name="kind"/> with <paramref name="plan"/> (the plan the planner made for it).</summary>
    public static RankWork Of(StrategyKind kind, SequencePlan plan, int rank) => kind switch
    {
        StrategyKind.Ring or StrategyKind.Zigzag => Exact(plan, rank),
        StrategyKind.Apb or StrategyKind.ApbBalanced or StrategyKind.Star => Anchored(plan, rank),
        _ => throw new ArgumentException($"{kind.Name()} has no per-rank work model"),
    };

    public static RankWork[] All(StrategyKind kind, SequencePlan plan) =>
        Enumerable.Range(0, plan.Ranks).Select(r => Of(kind, plan, r)).ToArray();

    /// <summary>Max over mean of the ranks' pairs: 1 is perfectly balanced; the slowest rank gates the prefill.</summary>
    public static double Imbalance(IReadOnlyList<RankWork> ranks) => ranks.Max(w => w.Pairs) / ranks.Average(w => w.Pairs);

    /// <summary>Ring and zigzag ring: every row sees every position up to its own (causal over the padded sequence).</summary>
    static RankWork Exact(SequencePlan plan, int rank)
    {
        double pairs = plan.Positions(rank).Sum(x => x + 1.0);
        return new RankWork(rank, plan.BlockLength, pairs, 0, (long)(plan.Ranks - 1) * plan.BlockLength, 0);
    }

    /// <summary>
    /// APB and Star: the anchor rows causally, then each chunk's rows against [passing; anchor; chunk] bottom-right
    /// aligned (ApbAttention, BalancedApbAttention); chunk 0 of the zigzag layout against itself only.
    /// </summary>
    static RankWork Anchored(SequencePlan plan, int rank)
    {
        int a = plan.AnchorRows(rank), lc = plan.ChunkLength;
        double pairs = FullAttention.CausalPairs(a, a);
        long read = 0, scored = 0;
        foreach (int c in plan.ChunksOf(rank))
        {
            int p = plan.ChunkPassingRows(c);
            bool alone = plan.Layout == SequenceLayout.Zigzag && c == 0;
            pairs += alone ? FullAttention.CausalPairs(lc, lc) : FullAttention.CausalPairs(lc, p + a + lc);
            read += p;
            if (plan.ChunkScores(c)) scored += plan.ChunkSelectableRows(c);
        }
        long received = plan.PassingLength > 0
            ? Enumerable.Range(0, plan.Ranks).Where(j => j != rank).Sum(j => (long)plan.SentRows(j)) : 0;
        return new RankWork(rank, plan.LocalRows(rank), pairs, read, received, scored);
    }
}
