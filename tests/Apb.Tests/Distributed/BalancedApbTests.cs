using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Comms;
using Apb.Strategies;
using Apb.Strategies.Apb;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Distributed;

/// <summary>
/// Balanced APB (docs/apb-algorithm.md, 2.6): one layer against the visibility of each row built from global positions,
/// the whole model against contiguous APB on twice the ranks (the same definition on the same 2H chunks), and the exact
/// phase after it. ApbTests holds it to full attention when nothing is dropped, its caches to its own rows, and pad
/// tokens to changing nothing.
/// </summary>
public class BalancedApbTests
{
    /// <summary>
    /// One layer on H in-process ranks, against a reference that knows only each row's global position: an anchor row
    /// sees the anchor causally; a context row in chunk c sees the anchor (c > 0), every earlier chunk whole (l_p' = l_c)
    /// but the context rows the anchor holds, or none of it (l_p = 0), and its own chunk causally. The anchor's rows are
    /// values of their own here, so a context row that were passed as well would show in the output.
    /// </summary>
    [Theory]
    [InlineData(2, 37, 5, true)]
    [InlineData(3, 50, 4, false)]
    [InlineData(4, 61, 6, true)]
    [InlineData(4, 61, 0, true)]
    public void OneLayerEqualsTheVisibilityOfEachRow(int ranks, int n, int anchor, bool wholeChunks)
    {
        var c = LoadModel("llama-tiny").Config;
        int lc = (n + 2 * ranks - 1) / (2 * ranks), qd = c.QDim, kvd = c.KvDim, heads = c.NumAttentionHeads, d = c.HeadDim;
        var plan = SequencePlan.ApbBalanced(n, ranks, anchor, wholeChunks ? 2 * lc : 0, 0, 0);
        Assert.Equal(wholeChunks ? lc : 0, plan.ChunkPassingLength);
        var rope = new RopeTable(c.Rope, c.HeadDim);
        // Row values from (kind, global id): anchor rows are ids 0..a-1, context position x is id 1000 + x.
        var group = new InProcessGroup(ranks, TimeSpan.FromSeconds(30));
        var local = group.Run(r =>
        {
            var b = new CpuBackend();
            var comm = group.Communicator(r, b);
            int a = plan.AnchorRows(r), rows = plan.LocalRows(r);
            var pos = plan.LocalPositions(r);
            int Id(int i) => i < a ? i : 1000 + pos[i];
            Tensor Make(int kind, int cols) => RowsById(b, rows, cols, kind, Id);
            Tensor q = Make(1, qd), k = Make(2, kvd), v = Make(3, kvd), o = b.Allocate(rows, qd);
            using (var att = new BalancedApbAttention(b, c, rope, plan, comm, null)) att.Attend(0, q, k, v, o);
            // q and k were rotated in place: the reference reads the same post-RoPE rows.
            return (Q: Values(b, q), K: Values(b, k), V: Values(b, v), O: Values(b, o), Ids: Enumerable.Range(0, rows).Select(Id).ToArray());
        }, r => $"balanced attention on rank {r}");

        // Every key by its global id (anchor rows are the same on every rank).
        var keys = new Dictionary<int, (float[] K, float[] V)>();
        foreach (var x in local)
            for (int i = 0; i < x.Ids.Length; i++)
                keys[x.Ids[i]] = (x.K.AsSpan(i * kvd, kvd).ToArray(), x.V.AsSpan(i * kvd, kvd).ToArray());
        bool Visible(int row, int key)
        {
            if (row < 1000) return key < 1000 && key <= row;
            int x = row - 1000, chunk = x / lc;
            if (key < 1000) return chunk > 0;
            int y = key - 1000;
            if (y >= n) return false;
            // Earlier chunks whole, but for the context start the anchor holds (no query here: its first `anchor` positions).
            return y / lc == chunk ? y <= x : y / lc < chunk && wholeChunks && y >= anchor;
        }
        int checkedRows = 0;
        foreach (var x in local)
            for (int i = 0; i < x.Ids.Length; i++)
            {
                int row = x.Ids[i];
                if (row >= 1000 + n) continue; // pad rows: never seen by a real row, their output is not specified
                var visible = keys.Keys.Where(j => Visible(row, j)).ToList();
                var want = new float[qd];
                for (int h = 0; h < heads; h++)
                {
                    int kh = h / (heads / c.NumKeyValueHeads);
                    var w = visible.Select(j =>
                    {
                        double dot = 0;
                        for (int e = 0; e < d; e++) dot += x.Q[i * qd + h * d + e] * keys[j].K[kh * d + e];
                        return dot / Math.Sqrt(d);
                    }).ToList();
                    double max = w.Max(), sum = w.Sum(s => Math.Exp(s - max));
                    for (int e = 0; e < d; e++)
                        want[h * d + e] = (float)(visible.Select((j, t) => Math.Exp(w[t] - max) * keys[j].V[kh * d + e]).Sum() / sum);
                }
                double err = RelativeError(x.O.AsSpan(i * qd, qd), want);
                Assert.True(err < 1e-5, $"row {(row < 1000 ? $"anchor {row}" : $"position {row - 1000}")}: relative error {err:E3}");
                checkedRows++;
            }
        Assert.Equal(n + (ranks) * plan.AnchorLength, checkedRows);
    }

    /// <summary>
    /// The per-row definition is contiguous APB's over 2H chunks: balanced APB on H ranks with l_p gives the logits of
    /// contiguous APB on 2H ranks with ceil(l_p / 2), with the scorers really selecting (and pad in the last chunks).
    /// </summary>
    [Theory]
    [InlineData("embedded-random", 2, 61, 6, 6, ScorerKind.Query)]
    [InlineData("embedded-random", 4, 101, 8, 5, ScorerKind.Query)]   // odd l_p: 3 per chunk; n = 101 over 8 chunks of 13: pad
    [InlineData("embedded-random", 3, 50, 6, 4, ScorerKind.QueryOnly)]
    [InlineData("embedded", 2, 90, 10, 8, ScorerKind.Retaining)]
    public void BalancedOnHRanksIsContiguousApbOnTwiceTheRanks(string model, int ranks, int n, int anchor, int passing, ScorerKind scorer)
    {
        var m = LoadModel(model);
        var context = Ids(n, n + ranks, m.Config.VocabSize);
        var query = Ids(3, n + 2, m.Config.VocabSize);
        string? heads = scorer == ScorerKind.Retaining ? Path.Combine(m.Dir, "retaining_heads.safetensors") : null;
        var o = Options(StrategyKind.ApbBalanced, ranks) with { AnchorLength = anchor, Scorer = scorer, RetainingHeadsPath = heads };
        using var balanced = Session(m, o with { PassingLength = passing });
        using var contiguous = Session(m, o with { Strategy = StrategyKind.Apb, Ranks = 2 * ranks, PassingLength = (passing + 1) / 2 });
        var (tb, lb) = Generate(balanced, context, query, 4);
        var (tc, lc) = Generate(contiguous, context, query, 4);
        Assert.Equal(SequenceLayout.Zigzag, balanced.Plan!.Layout);
        Assert.True(balanced.Plan.ChunkSentRows(0) < balanced.Plan.ChunkRealRows(0), "the case must score and drop rows");
        Assert.Equal(tc, tb);
        for (int i = 0; i < lb.Count; i++)
        {
            double err = RelativeError(lb[i], lc[i]);
            Assert.True(err < 1e-5, $"step {i}: balanced x{ranks} vs contiguous x{2 * ranks}: relative error {err:E3}");
        }
        // ... and it is an approximation: the dropped rows change the logits.
        Assert.True(RelativeError(lb[0], FullLogits(m, context, query).AsSpan(^lb[0].Length..)) > 1e-4);
    }

    [Fact]
    public void OverlapOnAndOffGiveTheSameLogits()
    {
        var m = LoadModel("llama-tiny");
        var context = Ids(80, 80, m.Config.VocabSize);
        var query = Ids(3, 81, m.Config.VocabSize);
        var o = Options(StrategyKind.ApbBalanced, 3) with { AnchorLength = 8, PassingLength = 4 };
        float[] on, off;
        using (var s = Session(m, o with { Overlap = true })) on = s.AllLogits(context, query);
        using (var s = Session(m, o with { Overlap = false })) off = s.AllLogits(context, query);
        Assert.Equal(off, on);
    }

    [Fact]
    public void OneRankIsFullAttention()
    {
        var plan = SequencePlan.ApbBalanced(40, 1, 8, 4, 3, 0);
        Assert.Equal(SequenceLayout.Contiguous, plan.Layout);
        Assert.Equal(0, plan.AnchorRows(0));
        Assert.Equal(0, plan.PassingRows(0));
    }

    [Fact]
    public void ThePlanPutsChunksAndPassingWhereTheLayoutSays()
    {
        // n = 30 over 2 ranks: 4 chunks of 8, the last holding 6 real tokens; l_p 5 passes 3 per chunk.
        var plan = SequencePlan.ApbBalanced(30, 2, 4, 5, 2, 1);
        Assert.Equal((8, 16, 3), (plan.ChunkLength, plan.BlockLength, plan.ChunkPassingLength));
        Assert.Equal([0, 3], plan.ChunksOf(0));
        Assert.Equal([1, 2], plan.ChunksOf(1));
        Assert.Equal([0, 1, 1, 0], Enumerable.Range(0, 4).Select(plan.RankOfChunk));
        Assert.Equal([8, 8, 8, 6], Enumerable.Range(0, 4).Select(plan.ChunkRealRows));
        Assert.Equal([3, 3, 3, 0], Enumerable.Range(0, 4).Select(plan.ChunkSentRows));
        Assert.Equal([0, 3, 6, 9], Enumerable.Range(0, 4).Select(plan.ChunkPassingRows));
        Assert.Equal((4, 4), (plan.AnchorRows(0), plan.AnchorRows(1))); // rank 0's late chunk reads the anchor
        Assert.Equal((3, 6), (plan.SentRows(0), plan.SentRows(1)));
        Assert.Equal((9, 6), (plan.PassingRows(0), plan.PassingRows(1)));
        Assert.Equal(14, plan.RealRows(0));
        Assert.Throws<ApbException>(() => SequencePlan.ApbBalanced(30, 2, 17, 5, 2, 1)); // anchor longer than a rank's 16 rows
    }
}
