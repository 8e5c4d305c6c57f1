using Apb.Strategies;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Distributed;

/// <summary>
/// APB with --anchor-query false (docs/apb-algorithm.md, 2.2): the anchor is the plain context start, and the query is
/// read only after the context, against every rank's cache.
/// </summary>
public class QueryFreeAnchorTests
{
    static StrategyOptions QueryFree(StrategyKind kind, int ranks, string heads) =>
        Options(kind, ranks) with { AnchorQuery = false, Scorer = ScorerKind.Retaining, RetainingHeadsPath = heads };

    /// <summary>
    /// With whole blocks passed, every context row sees each earlier context token once (the anchor's rows are not
    /// passed again) and no query, and the query rows then see every cached row: full attention over context and query,
    /// query rows included. With the query in the anchor (the default) the same lengths are not full attention: the
    /// later blocks' rows see the query, which in full attention comes after them.
    /// </summary>
    [Theory]
    [InlineData(2, 37, 7, StrategyKind.Apb)]
    [InlineData(4, 61, 9, StrategyKind.Apb)]
    [InlineData(8, 101, 5, StrategyKind.Apb)]
    [InlineData(2, 37, 7, StrategyKind.ApbBalanced)]
    [InlineData(4, 61, 6, StrategyKind.ApbBalanced)]
    public void PassingWholeBlocksItIsFullAttentionQueryIncluded(int ranks, int n, int anchor, StrategyKind kind)
    {
        var m = LoadModel("embedded-random");
        string heads = RetainingHeadsFile.Write(m.Config, 16, seed: 5);
        var context = Ids(n, n + 2, m.Config.VocabSize);
        var query = Ids(4, n + 3, m.Config.VocabSize);
        int lb = (n + ranks - 1) / ranks;
        var full = FullLogits(m, context, query);

        using var free = Session(m, QueryFree(kind, ranks, heads) with { AnchorLength = anchor, PassingLength = lb });
        double err = RelativeError(free.AllLogits(context, query), full);
        Assert.True(err < 1e-5, $"{kind.Name()} x{ranks}, query-free anchor of {anchor}, l_p = l_b = {lb}: relative error {err:E3} against full");
        Assert.Equal(0, free.Plan!.QueryLength);

        using var withQuery = Session(m, QueryFree(kind, ranks, heads) with { AnchorLength = anchor, PassingLength = lb, AnchorQuery = true });
        double moved = RelativeError(withQuery.AllLogits(context, query), full);
        Assert.True(moved > 1e-4, $"{kind.Name()} x{ranks} with the query in the anchor: {moved:E3} from full (expected the query to change later blocks)");
    }

    [Fact]
    public void TheAnchorIsTheContextStartAndThePlanSaysSo()
    {
        var o = new StrategyOptions { Strategy = StrategyKind.Apb, Ranks = 4, FallbackBelow = 0, AnchorLength = 6, PassingLength = 4, AnchorQuery = false,
            Scorer = ScorerKind.Retaining };
        var p = SequencePlanner.Plan(o, 40, 3, anchorInsertAt: 2);
        int[] context = [.. Enumerable.Range(100, 40)], query = [7, 8, 9];
        Assert.Equal(new[] { 100, 101, 102, 103, 104, 105 }, p.Plan!.AnchorIds(context, query));
        Assert.Contains("query-free anchor", p.ToString());
        // The default inserts the query after the header's 2 tokens.
        var q = SequencePlanner.Plan(o with { AnchorQuery = true }, 40, 3, anchorInsertAt: 2);
        Assert.Equal(new[] { 100, 101, 7, 8, 9, 102 }, q.Plan!.AnchorIds(context, query));
        Assert.DoesNotContain("query-free", q.ToString());
        // Star's anchor never holds the query; the option is APB's and leaves Star's plan alone.
        var star = SequencePlanner.Plan(o with { Strategy = StrategyKind.Star }, 40, 3, anchorInsertAt: 2);
        Assert.True(star.AnchorQuery);
    }

    [Fact]
    public void TheQueryAwareScorerIsRefusedWithAQueryFreeAnchor()
    {
        var m = LoadModel("embedded-random");
        var o = Options(StrategyKind.Apb, 2) with { AnchorQuery = false, Scorer = ScorerKind.Query };
        var e = Assert.Throws<ApbException>(() => o.Validate(m.Config));
        Assert.Contains("--anchor-query false", e.Message);
        Assert.Contains("--scorer retaining", e.Message);
        // A plan made without validation says the same.
        e = Assert.Throws<ApbException>(() => SequencePlanner.Plan(o, 40, 3, 0));
        Assert.Contains("--anchor-query false", e.Message);
        // Full attention has no anchor: the flag is moot there, not an error.
        (Options(StrategyKind.Full, 1) with { AnchorQuery = false, Scorer = ScorerKind.Query }).Validate(m.Config);
    }
}
