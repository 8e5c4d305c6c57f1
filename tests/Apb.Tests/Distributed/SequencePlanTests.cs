using Apb.Strategies;
using Xunit;

namespace Apb.Tests.Distributed;

public class SequencePlanTests
{
    static readonly int[] Context = Enumerable.Range(100, 40).ToArray();
    static readonly int[] Query = [7, 8, 9];

    [Fact]
    public void ApbAnchorInsertsTheQueryAfterTheHeaderAndTruncates()
    {
        var plan = SequencePlan.Apb(40, 4, anchor: 8, passing: 2, queryLength: 3, insertAt: 2);
        Assert.Equal(new[] { 100, 101, 7, 8, 9, 102, 103, 104 }, plan.AnchorIds(Context, Query));
        // Truncation to l_a keeps the header and the query, dropping context from the end.
        var tight = SequencePlan.Apb(40, 4, anchor: 5, passing: 2, queryLength: 3, insertAt: 2);
        Assert.Equal(new[] { 100, 101, 7, 8, 9 }, tight.AnchorIds(Context, Query));
        var atStart = SequencePlan.Apb(40, 4, anchor: 4, passing: 2, queryLength: 3, insertAt: 0);
        Assert.Equal(new[] { 7, 8, 9, 100 }, atStart.AnchorIds(Context, Query));
    }

    [Fact]
    public void LocalRowsAreAnchorThenBlockWithGlobalPositions()
    {
        var plan = SequencePlan.Apb(38, 4, anchor: 6, passing: 2, queryLength: 3, insertAt: 1);
        Assert.Equal(10, plan.BlockLength);
        Assert.Equal(Context.Take(10), plan.LocalIds(0, Context[..38], Query, padId: 0));     // rank 0: no anchor
        Assert.Equal(Enumerable.Range(0, 10), plan.LocalPositions(0));
        var ids = plan.LocalIds(3, Context[..38], Query, padId: -5);
        Assert.Equal(new[] { 100, 7, 8, 9, 101, 102 }, ids.Take(6));
        Assert.Equal(Context[30..38].Concat([-5, -5]), ids.Skip(6));
        Assert.Equal(Enumerable.Range(0, 6).Concat(Enumerable.Range(30, 10)), plan.LocalPositions(3));
        Assert.Equal(new[] { 10, 10, 10, 8 }, Enumerable.Range(0, 4).Select(plan.RealRows));
        // Passing: each rank but the last sends l_p; rank r receives r x l_p.
        Assert.Equal(new[] { 0, 2, 4, 6 }, Enumerable.Range(0, 4).Select(plan.PassingRows));
        Assert.Equal(0, plan.SentRows(3));
    }

    /// <summary>Rows every later rank sees in its anchor are not passed again (docs/apb-algorithm.md, 2.3d).</summary>
    [Fact]
    public void RowsTheAnchorHoldsAreNeitherScoredNorPassed()
    {
        // l_a 6 with a query of 3: the anchor holds context positions 0..2, the first three rows of block 0.
        var plan = SequencePlan.Apb(38, 4, anchor: 6, passing: 2, queryLength: 3, insertAt: 1);
        Assert.Equal(3, plan.AnchorContextRows);
        Assert.Equal(new[] { 3, 0, 0, 0 }, Enumerable.Range(0, 4).Select(plan.ChunkSkippedRows));
        Assert.Equal(new[] { 7, 10, 10, 8 }, Enumerable.Range(0, 4).Select(plan.ChunkSelectableRows));
        Assert.True(plan.ChunkScores(0));
        // A passing length of 7 or more passes rank 0's seven other rows whole, unscored.
        var whole = SequencePlan.Apb(38, 4, anchor: 6, passing: 8, queryLength: 3, insertAt: 1);
        Assert.Equal(new[] { 7, 8, 8, 0 }, Enumerable.Range(0, 4).Select(whole.SentRows));
        Assert.False(whole.ChunkScores(0));
        Assert.True(whole.ChunkScores(1));
        // Balanced: chunk 0 (on rank 0) skips them; the late chunks are past the anchor.
        var balanced = SequencePlan.ApbBalanced(40, 2, anchor: 8, passing: 4, queryLength: 3, insertAt: 0);
        Assert.Equal(new[] { 5, 0, 0, 0 }, Enumerable.Range(0, 4).Select(balanced.ChunkSkippedRows));
        Assert.Equal(new[] { 2, 2, 2, 0 }, Enumerable.Range(0, 4).Select(balanced.ChunkSentRows));
        // Without an anchor nothing is skipped.
        Assert.Equal(0, SequencePlan.Apb(38, 4, anchor: 0, passing: 2, queryLength: 0, insertAt: 0).ChunkSkippedRows(0));
    }

    [Fact]
    public void StarAnchorIsThePlainFirstBlock()
    {
        var plan = SequencePlan.Star(40, 4);
        Assert.Equal(10, plan.AnchorLength);
        Assert.Equal(Context.Take(10), plan.AnchorIds(Context, Query));
        Assert.Equal(0, plan.AnchorRows(0));
        Assert.Equal(Context.Take(10).Concat(Context.Skip(20).Take(10)), plan.LocalIds(2, Context, Query, 0));
    }

    [Fact]
    public void ZigzagRankHoldsChunksRAndTwoHMinusOneMinusR()
    {
        var plan = SequencePlan.Zigzag(10, 2); // 4 chunks of 3, padded to 12
        Assert.Equal(3, plan.ChunkLength);
        Assert.Equal(new[] { 0, 1, 2, 9, 10, 11 }, plan.Positions(0));
        Assert.Equal(new[] { 3, 4, 5, 6, 7, 8 }, plan.Positions(1));
        Assert.Equal(4, plan.RealRows(0));
        Assert.Equal(6, plan.RealRows(1));
    }

    [Fact]
    public void PaddingIsASuffixOfEveryRanksBlock()
    {
        foreach (int n in new[] { 5, 9, 13, 17, 37 })
            foreach (int h in new[] { 1, 2, 3, 4, 5 })
                foreach (var plan in new[] { SequencePlan.Contiguous(n, h), SequencePlan.Zigzag(n, h) })
                {
                    if (n < h) continue;
                    int total = 0;
                    for (int r = 0; r < h; r++)
                    {
                        var pos = plan.Positions(r);
                        int real = plan.RealRows(r);
                        Assert.All(pos.Take(real), p => Assert.True(p < n));
                        Assert.All(pos.Skip(real), p => Assert.True(p >= n));
                        total += real;
                    }
                    Assert.Equal(n, total);
                }
    }

    [Fact]
    public void BadPlansAreClearErrors()
    {
        Assert.Contains("5 tokens but 8 ranks", Assert.Throws<ApbException>(() => SequencePlan.Contiguous(5, 8)).Message);
        Assert.Contains("anchor of 20 tokens is longer than the block of 10",
            Assert.Throws<ApbException>(() => SequencePlan.Apb(40, 4, 20, 2, 3, 0)).Message);
        Assert.Contains("passing length of 11 tokens is longer than the block of 10",
            Assert.Throws<ApbException>(() => SequencePlan.Apb(40, 4, 8, 11, 3, 0)).Message);
        Assert.Contains("query of 9 tokens is longer than the anchor of 8",
            Assert.Throws<ApbException>(() => SequencePlan.Apb(40, 4, 8, 2, 9, 0)).Message);
        Assert.Contains("use --anchor 9 or more",
            Assert.Throws<ApbException>(() => SequencePlan.Apb(40, 4, 8, 2, 3, 6)).Message);
    }
}
