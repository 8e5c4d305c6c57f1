using Apb.Eval;
using Xunit;

namespace Apb.Tests.Eval;

/// <summary>The sample-by-sample difference against full attention, on hand-made scores whose numbers are worked out below.</summary>
public class PairedDifferenceTests
{
    static readonly StrategySpec Full = new("full", 1), Apb = new("apb", 4);

    static RulerRow Row(StrategySpec s, string task, params double[] scores) =>
        new(s, 4096, task, scores.Average(), scores.Length, 1.0, scores);

    [Fact]
    public void DifferenceIsTheMeanOverTasksOfEachTasksMeanDifference()
    {
        // Task a: d = 0, -1, 0, 0 (mean -0.25, sample variance 0.25, over 4 samples 0.0625); task b: d = 0 everywhere.
        // Over the two tasks: -0.125 (-12.5 points), standard error sqrt(0.0625) / 2 = 0.125 (12.5 points).
        var full = new[] { Row(Full, "a", 1, 1, 0, 1), Row(Full, "b", 1, 0, 1, 1) };
        var apb = new[] { Row(Apb, "a", 1, 0, 0, 1), Row(Apb, "b", 1, 0, 1, 1) };
        var d = PairedDifference.Of(apb, full);
        Assert.NotNull(d);
        Assert.Equal(-12.5, d.Points, 9);
        Assert.Equal(12.5, d.StandardError, 9);
        Assert.Equal(2, d.Tasks);
        Assert.Equal(24.5, d.Interval95, 9);
    }

    [Fact]
    public void PartialCreditAndIdenticalScoresGiveZeroWithNoSpread()
    {
        var full = new[] { Row(Full, "mv", 0.75, 0.5, 1) };
        var same = new[] { Row(Apb, "mv", 0.75, 0.5, 1) };
        var d = PairedDifference.Of(same, full)!;
        Assert.Equal(0, d.Points, 9);
        Assert.Equal(0, d.StandardError, 9);
    }

    [Fact]
    public void RowsWithoutScoresOrOfOtherCountsDoNotPair()
    {
        var full = new[] { Row(Full, "a", 1, 1, 0, 1) };
        Assert.Null(PairedDifference.Of([new RulerRow(Apb, 4096, "a", 0.5, 4, 1.0)], full));   // no per-sample scores
        Assert.Null(PairedDifference.Of([Row(Apb, "a", 1, 0, 1)], full));                       // 3 samples against 4
        Assert.Null(PairedDifference.Of([Row(Apb, "other", 1, 1, 1, 1)], full));                // no such task in full
    }

    [Fact]
    public void TheTableAddsAMinusFullRowWhereFullRanOnTheSameSamples()
    {
        var rows = new[] { Row(Full, "a", 1, 1, 0, 1), Row(Full, "b", 1, 0, 1, 1), Row(Apb, "a", 1, 0, 0, 1), Row(Apb, "b", 1, 0, 1, 1) };
        string table = RulerHarness.FormatTable(rows);
        var line = table.Split('\n').Single(l => l.Contains("minus full"));
        Assert.Equal("| 4096 | minus full (paired, 95 %) | | | | -12.5 ± 24.5 | |", line.TrimEnd());
        // Without full attention in the run there is nothing to subtract.
        Assert.DoesNotContain("minus full", RulerHarness.FormatTable(rows[2..]));
    }
}
