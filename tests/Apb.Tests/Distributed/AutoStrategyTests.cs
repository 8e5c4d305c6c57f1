using Apb.Strategies;
using Apb.Tests.Cli;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Distributed;

/// <summary>--strategy auto: which strategy a request gets and why (docs/apb-algorithm.md, 2.7), and that it runs it.</summary>
public class AutoStrategyTests
{
    static PrefillPlan Plan(int ranks, int n, int q, bool exact = false, int fallback = StrategyOptions.DefaultFallbackBelow) =>
        SequencePlanner.Plan(new StrategyOptions { Strategy = StrategyKind.Auto, Ranks = ranks, Exact = exact, FallbackBelow = fallback }, n, q, 0);

    [Theory]
    [InlineData(1, 128 * 1024, 64, false, StrategyKind.Full, "one rank")]
    [InlineData(8, 16 * 1024, 64, false, StrategyKind.Full, "below 32768 (--fallback-below)")]
    [InlineData(8, 16 * 1024, 64, true, StrategyKind.Full, "below 32768")]     // exact and short: full is exact too
    [InlineData(8, 128 * 1024, 64, true, StrategyKind.Zigzag, "--exact")]
    [InlineData(8, 128 * 1024, 64, false, StrategyKind.Apb, "apb over 8 ranks")]
    [InlineData(4, 32 * 1024, 64, false, StrategyKind.Apb, "apb over 4 ranks")]
    [InlineData(8, 40 * 1024, 4000, false, StrategyKind.Zigzag, "costs more than it saves")]   // a long query grows the anchor past the block's worth
    [InlineData(8, 33 * 1024, 5000, false, StrategyKind.Zigzag, "APB cannot run this request")] // the query does not fit a block
    public void AutoPicksByContextRanksAndCost(int ranks, int n, int q, bool exact, StrategyKind want, string why)
    {
        var p = Plan(ranks, n, q, exact);
        Assert.Equal(want, p.Strategy);
        Assert.Contains(why, p.Note);
        Assert.Equal(want == StrategyKind.Full ? 1 : ranks, p.Ranks);
        if (want == StrategyKind.Apb) Assert.Equal(SequenceLayout.Contiguous, p.Plan!.Layout);
    }

    [Fact]
    public void TheCostModelPrefersApbOnlyWhileItsSlowestRankIsCheaper()
    {
        var o = new StrategyOptions { Ranks = 8, FallbackBelow = 0 };
        var apb = SequencePlanner.Plan(o with { Strategy = StrategyKind.Apb }, 128 * 1024, 64, 0).Plan!;
        var zigzag = SequencePlanner.Plan(o with { Strategy = StrategyKind.Zigzag }, 128 * 1024, 64, 0).Plan!;
        Assert.True(AutoStrategy.Cost(StrategyKind.Apb, apb) < AutoStrategy.Cost(StrategyKind.Zigzag, zigzag));
        // Costs grow with each term: more pairs, more rows, more bytes received.
        var w = new RankWork(0, 100, 1000, 0, 10, 0);
        Assert.True(AutoStrategy.Cost(w with { Pairs = 2000 }) > AutoStrategy.Cost(w));
        Assert.True(AutoStrategy.Cost(w with { LocalRows = 200 }) > AutoStrategy.Cost(w));
        Assert.True(AutoStrategy.Cost(w with { Received = 20 }) > AutoStrategy.Cost(w));
    }

    /// <summary>A short test context on two ranks: APB's anchor would double each rank's rows, so auto runs the exact ring.</summary>
    [Fact]
    public void AnAutoSessionRunsWhatItPicked()
    {
        var m = LoadModel("embedded-random");
        var context = Ids(83, 1, m.Config.VocabSize);
        var query = Ids(3, 2, m.Config.VocabSize);
        using var s = Session(m, Options(StrategyKind.Auto, 2));
        var logits = s.AllLogits(context, query);
        Assert.Equal(StrategyKind.Zigzag, s.Strategy);
        Assert.Contains("zigzag ring", s.Note);
        Assert.True(RelativeError(logits, FullLogits(m, context, query)) < 1e-5);
    }

    [Fact]
    public void GenerateDefaultsToAutoOnSeveralRanksAndSaysWhatItPicked()
    {
        var run = CliRun.Apb("generate", "--model", Repo.TinyModel, "--ranks", "2", "-n", "2", "--prompt", "one two three four five six", "--chat", "false");
        Assert.True(run.Code == 0, run.Err);
        Assert.Contains("strategy auto x2", run.Err);
        Assert.Contains("auto: the context of", run.Err);
        var one = CliRun.Apb("generate", "--model", Repo.TinyModel, "-n", "1", "--prompt", "one two three", "--chat", "false");
        Assert.True(one.Code == 0, one.Err);
        Assert.DoesNotContain("auto", one.Err);
    }

    [Fact]
    public void ExactRefusesAnApproximateStrategy() =>
        HostileCliTests.AssertUserError(CliRun.Apb("generate", "--model", Repo.TinyModel, "--strategy", "apb", "--exact", "--prompt", "a b", "--chat", "false"),
            "--exact asks for exact attention, but apb is approximate");

    [Fact]
    public void InspectPrintsBothLayoutsWorkAndAutosChoice()
    {
        var run = CliRun.Apb("inspect", "--model", Repo.TinyModel, "--context", "64k", "--gpus", "4");
        Assert.True(run.Code == 0, run.Err);
        Assert.Contains("on 4 ranks", run.Out);
        Assert.Contains("apb-balanced", run.Out);
        // The memory table names strategies as --strategy takes them, in columns under its header's.
        var lines = run.Out.Split('\n');
        string header = lines.Single(l => l.TrimStart().StartsWith("strategy ")), balanced = lines.Single(l => l.TrimStart().StartsWith("apb-balanced ") && l.Contains("GiB"));
        Assert.Equal(header.IndexOf("1 GPU") + "1 GPU".Length, balanced.IndexOf(" -") + 2);
        Assert.Matches(@"imbalance \(max/mean pairs\) 1\.0[0-9]{2}", run.Out);
        Assert.Contains("--strategy auto picks apb (", run.Out);
        Assert.Contains("APB's default lengths: l_a 2048 (n/32 = 2048); l_p 512 (n/128 = 512)", run.Out);
        HostileCliTests.AssertUserError(CliRun.Apb("inspect", "--model", Repo.TinyModel, "--ranks", "4"), "--ranks needs --context");
        HostileCliTests.AssertUserError(CliRun.Apb("inspect", "--model", Repo.TinyModel, "--context", "64k", "--ranks", "1"), "give 2 to 64 ranks");
    }
}
