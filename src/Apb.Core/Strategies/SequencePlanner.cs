using Apb.Strategies.Apb;

namespace Apb.Strategies;

/// <summary>
/// What one prefill runs: the strategy (the one asked for, or full attention below the fallback length), on how many
/// ranks, with which plan (null for full attention), and a note saying why it differs from what was asked for. APB
/// scores with <see cref="Scorer"/>, its novelty term weighted by <see cref="NoveltyWeight"/> (null: the scorer's own),
/// and passes nothing in the layers below <see cref="PassingFromLayer"/> (<see cref="StrategyOptions.PassingFromLayer"/>).
/// </summary>
public sealed record PrefillPlan(StrategyKind Strategy, int Ranks, SequencePlan? Plan, string? Note, ScorerKind Scorer = ScorerKind.Query,
    float? NoveltyWeight = null, int PassingFromLayer = 0)
{
    public bool Distributed => Plan is not null;

    /// <summary>False for an APB plan whose anchor holds no query (--anchor-query false): the plan says so itself.</summary>
    public bool AnchorQuery => !Strategy.IsApb() || Plan is not { QueryLength: 0 };

    /// <summary>The novelty term's weight the ranks score with (0: the term is off).</summary>
    public float NoveltyTermWeight => ScorerChoice.NoveltyWeight(Scorer, NoveltyWeight);

    /// <summary>
    /// The lengths this request ran with where defaults chose them per request: APB's l_a, l_p and passing budget, Star's
    /// l_a, and the note when the strategy differs from the one asked for; null for full attention and the exact
    /// strategies, whose plan follows from the rank count. What an accuracy file records per row, so a file made under
    /// one build's defaults still says what ran.
    /// </summary>
    public string? Settings
    {
        get
        {
            string? lengths = Plan is null ? null
                : Strategy.IsApb() ? Plan.ApbLengths
                : Strategy == StrategyKind.Star ? $"l_a {Plan.AnchorLength}"
                : null;
            return lengths is null ? Note : Note is null ? lengths : $"{lengths}; {Note}";
        }
    }

    public override string ToString() =>
        Strategy.Name() + (Strategy.IsApb() ? $" ({StrategyOptions.ApbLabel(Scorer, NoveltyWeight, AnchorQuery, PassingFromLayer)})" : "") +
        $", {Ranks} rank(s)" + (Plan is null ? "" : $", {Plan}");
}

/// <summary>
/// Turns a request (context and query lengths, where the query goes in the anchor) and the group's options into a
/// <see cref="PrefillPlan"/>. Every rule about a request's shape lives here or in <see cref="SequencePlan"/>: the
/// short-context fallback, APB's default lengths and anchor growth, the checks that make a request impossible. It runs
/// before any rank does work, so a request it refuses costs nothing and leaves the group as it was.
/// </summary>
public static class SequencePlanner
{
    public static PrefillPlan Plan(StrategyOptions o, int contextLength, int queryLength, int anchorInsertAt)
    {
        if (contextLength < 0 || queryLength < 0) throw new ArgumentException("negative lengths");
        if (contextLength + queryLength == 0) throw new ApbException("nothing to prefill: both context and query are empty");
        var kind = o.Strategy;
        if (kind == StrategyKind.Auto)
        {
            var (chosen, why) = AutoStrategy.Choose(o, contextLength, queryLength, anchorInsertAt);
            return chosen == StrategyKind.Full ? new PrefillPlan(StrategyKind.Full, 1, null, why)
                : Plan(o with { Strategy = chosen }, contextLength, queryLength, anchorInsertAt) with { Note = why };
        }
        if ((kind.IsApb() || kind == StrategyKind.Star) && contextLength < o.FallbackBelow)
            return new PrefillPlan(StrategyKind.Full, 1, null,
                $"{kind.Name()}: the context of {contextLength} tokens is below {o.FallbackBelow} (--fallback-below), so full attention ran on one rank");
        if (kind == StrategyKind.Full) return new PrefillPlan(StrategyKind.Full, 1, null, null);

        int ranks = o.Ranks;
        // A query-free anchor is planned as Star's is: no query rows in it; the query still runs after the context.
        if (kind.IsApb() && !o.AnchorQuery) queryLength = 0;
        var plan = kind switch
        {
            StrategyKind.Ring or StrategyKind.Ulysses => SequencePlan.Contiguous(contextLength, ranks),
            StrategyKind.Zigzag => SequencePlan.Zigzag(contextLength, ranks),
            StrategyKind.Star => SequencePlan.Star(contextLength, ranks),
            _ => ApbPlan(kind, o, contextLength, ranks, queryLength, anchorInsertAt),
        };
        if (kind.IsApb() && !o.Scorer.UsesHeads())
        {
            StrategyOptions.CheckAnchorQuery(o.Scorer, o.AnchorQuery);
            CheckQueryAware(plan);
        }
        return new PrefillPlan(kind, ranks, plan, null, o.Scorer, o.NoveltyWeight, o.PassingFromLayer);
    }

    /// <summary>
    /// APB's plan with the lengths given or <see cref="ApbDefaults"/>' (the anchor grown to hold the header and the
    /// query). The passing budget is the one given; without one, the default passing length comes with the default
    /// budget (twice it), and a passing length given by hand runs as the paper defines it, every rank reading every
    /// earlier selection whole (`--passing L` alone keeps its meaning; `--passing-budget` adds a budget to it).
    /// </summary>
    static SequencePlan ApbPlan(StrategyKind kind, StrategyOptions o, int n, int ranks, int queryLength, int insertAt)
    {
        int anchor = o.AnchorLength ?? ApbDefaults.Anchor(n, ranks, insertAt, queryLength, kind == StrategyKind.ApbBalanced);
        int passing = o.PassingLength ?? ApbDefaults.For(n, ranks).Passing;
        int budget = o.PassingBudget ?? (o.PassingLength is null ? ApbDefaults.Budget(passing) : 0);
        return Rebuild(kind, n, ranks, anchor, passing, queryLength, insertAt, budget);
    }

    /// <summary>
    /// The plan a leader computed, from the numbers it sent (a process group's followers rebuild it exactly rather than
    /// re-deriving it from options that could differ between machines).
    /// </summary>
    public static SequencePlan Rebuild(StrategyKind kind, int n, int ranks, int anchor, int passing, int queryLength, int insertAt,
        int passingBudget = 0) => kind switch
    {
        StrategyKind.Ring or StrategyKind.Ulysses => SequencePlan.Contiguous(n, ranks),
        StrategyKind.Zigzag => SequencePlan.Zigzag(n, ranks),
        StrategyKind.Star => SequencePlan.Star(n, ranks),
        StrategyKind.Apb => SequencePlan.Apb(n, ranks, anchor, passing, queryLength, insertAt, passingBudget),
        StrategyKind.ApbBalanced => SequencePlan.ApbBalanced(n, ranks, anchor, passing, queryLength, insertAt, passingBudget),
        _ => throw new ArgumentException($"{kind} has no sequence plan"),
    };

    /// <summary>The query-aware scorer reads the query from the anchor: refuse plans that must score without one.</summary>
    static void CheckQueryAware(SequencePlan plan)
    {
        bool scores = Enumerable.Range(0, plan.ChunkCount).Any(plan.ChunkScores);
        if (scores && (plan.AnchorLength == 0 || plan.QueryLength == 0))
            throw new ApbException(
                $"the query-aware scorer reads the query from the anchor, but {(plan.QueryLength == 0 ? "there is no query" : "the anchor is empty (--anchor 0)")}: " +
                "pass a query and an anchor that holds it, use --passing large enough to keep whole blocks, or use --scorer retaining");
    }
}
