using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Comms;
using Apb.Strategies;
using Apb.Strategies.Apb;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Distributed;

/// <summary>
/// APB's passing budget B (docs/apb-algorithm.md, 2.8): chunk c reads the best floor(B / c) rows of each earlier chunk's
/// selection, which the sender puts first. Held to the definition: the plan's counts; the best-first order, whose every
/// prefix is a selection of its own; one layer, where rank r must see exactly what the budget-free plan with l_p =
/// floor(B / r) shows it; and the whole model at the ends (a budget nobody reaches is no budget).
/// </summary>
public class PassingBudgetTests
{
    [Fact]
    public void ThePlanReadsBudgetOverSendersFromEachAndSendsNoMoreThanTheFirstReaderTakes()
    {
        // 64K over 8 ranks, l_p 512 (ApbDefaults' 64K), B = 2 l_p: ranks 1 and 2 read what they read without a budget.
        var none = SequencePlan.Apb(65536, 8, anchor: 2048, passing: 512, queryLength: 32, insertAt: 0);
        var plan = SequencePlan.Apb(65536, 8, anchor: 2048, passing: 512, queryLength: 32, insertAt: 0, budget: 1024);
        Assert.Equal(new[] { 512, 512, 341, 256, 204, 170, 146, 0 }, Enumerable.Range(0, 8).Select(plan.SentRows));
        Assert.Equal(new[] { 0, 512, 1024, 1023, 1024, 1020, 1020, 1022 }, Enumerable.Range(0, 8).Select(plan.PassingRows));
        Assert.Equal(new[] { 0, 512, 1024, 1536, 2048, 2560, 3072, 3584 }, Enumerable.Range(0, 8).Select(none.PassingRows));
        Assert.Equal(146, plan.ChunkReadRows(0, 7));
        Assert.Equal(512, plan.ChunkReadRows(0, 2));
        // Rank 0's selection is read in prefixes (146 of 512 by rank 7): it goes best first. Rank 6's only reader takes all.
        Assert.True(plan.ChunkSendsBestFirst(0));
        Assert.False(plan.ChunkSendsBestFirst(6));
        Assert.DoesNotContain(Enumerable.Range(0, 8), none.ChunkSendsBestFirst);
        // What the memory models size by: under the budget rank 2's 1,024 rows pass rank 7's 1,022.
        Assert.Equal((1024, 3584), (plan.MostPassingRows, none.MostPassingRows));
        Assert.Contains("passing budget 1024", plan.ToString());
        Assert.DoesNotContain("budget", none.ToString());
        // A budget no rank reaches ((H - 1) l_p or more) changes nothing.
        var loose = SequencePlan.Apb(65536, 8, anchor: 2048, passing: 512, queryLength: 32, insertAt: 0, budget: 7 * 512);
        Assert.Equal(Enumerable.Range(0, 8).Select(none.PassingRows), Enumerable.Range(0, 8).Select(loose.PassingRows));
        Assert.DoesNotContain(Enumerable.Range(0, 8), loose.ChunkSendsBestFirst);
        // A budget smaller than the senders leaves the late ranks nothing to read from anyone.
        var tight = SequencePlan.Apb(800, 8, anchor: 20, passing: 10, queryLength: 4, insertAt: 0, budget: 3);
        Assert.Equal(new[] { 0, 3, 2, 3, 0, 0, 0, 0 }, Enumerable.Range(0, 8).Select(tight.PassingRows));
        Assert.Equal(new[] { 3, 1, 1, 0, 0, 0, 0, 0 }, Enumerable.Range(0, 8).Select(tight.SentRows));
        // Balanced: the same rule per chunk (chunk c has c senders); l_p per chunk is ceil(l_p / 2).
        var balanced = SequencePlan.ApbBalanced(65536, 4, anchor: 1024, passing: 512, queryLength: 32, insertAt: 0, budget: 600);
        Assert.Equal(new[] { 256, 256, 200, 150, 120, 100, 85, 0 }, Enumerable.Range(0, 8).Select(balanced.ChunkSentRows));
        Assert.Equal(new[] { 0, 256, 512, 600, 600, 600, 600, 595 }, Enumerable.Range(0, 8).Select(balanced.ChunkPassingRows));
        Assert.Equal(600 + 600, balanced.MostPassingRows); // rank 3 holds chunks 3 and 4
        Assert.Equal("l_a 1024, l_p 512 (256 per chunk), passing budget 600", balanced.ApbLengths);
        Assert.Equal("l_a 2048, l_p 512, no passing budget", none.ApbLengths);
    }

    /// <summary>
    /// The default lengths come with the default budget, twice l_p; a passing length given by hand runs as the paper
    /// defines it unless a budget is given too; 0 turns the budget off.
    /// </summary>
    [Fact]
    public void TheDefaultBudgetComesWithTheDefaultPassingLength()
    {
        int Budget(StrategyOptions o) => SequencePlanner.Plan(o, 65536, 32, 0).Plan!.PassingBudget;
        foreach (var kind in new[] { StrategyKind.Apb, StrategyKind.ApbBalanced })
        {
            var o = Options(kind, 8);
            Assert.Equal(2 * 512, Budget(o));
            Assert.Equal(0, Budget(o with { PassingLength = 1024 }));
            Assert.Equal(700, Budget(o with { PassingLength = 1024, PassingBudget = 700 }));
            Assert.Equal(0, Budget(o with { PassingBudget = 0 }));
        }
        // auto's APB gets the same default.
        Assert.Equal(1024, Budget(Options(StrategyKind.Auto, 8) with { Exact = false }));
    }

    [Fact]
    public void ANegativeBudgetAndABudgetForAStrategyThatPassesNothingAreRefused()
    {
        var e = Assert.Throws<ApbException>(() => SequencePlan.Apb(100, 4, 8, 4, 2, 0, budget: -1));
        Assert.Contains("--passing-budget must be >= 0", e.Message);
        var config = LoadModel("embedded-random").Config;
        foreach (int budget in new[] { 8, 0 })
        {
            e = Assert.Throws<ApbException>(() => (Options(StrategyKind.Star, 4) with { PassingBudget = budget }).Validate(config));
            Assert.Contains("star passes none", e.Message);
        }
        (Options(StrategyKind.Auto, 4) with { PassingBudget = 8 }).Validate(config); // auto may run APB
        Assert.Contains("passing budget 8", (Options(StrategyKind.Apb, 4) with { PassingBudget = 8 }).Describe());
    }

    /// <summary>eval ruler refuses a budget no listed strategy reads, and a negative one, before it makes any sample; it labels the rows it runs.</summary>
    [Fact]
    public void EvalRulerChecksTheBudgetFirstAndLabelsTheSetting()
    {
        var (code, output, err) = CliRun.Apb("eval", "ruler", "--tasks", "niah_single_1", "--length", "1k", "--samples", "1", "-s", "full,star", "--passing-budget", "64");
        Assert.Equal(1, code);
        Assert.Contains("runs no APB", err);
        Assert.DoesNotContain("samples", err);
        (code, _, err) = CliRun.Apb("eval", "ruler", "--tasks", "niah_single_1", "--length", "1k", "--samples", "1", "-s", "apb", "--passing-budget", "-1");
        Assert.Equal(1, code);
        Assert.Contains("--passing-budget must be >= 0", err);
        (code, output, err) = CliRun.Apb("eval", "ruler", "--tasks", "niah_single_1", "--length", "1k", "--samples", "1", "-s", "apb,star", "--passing-budget", "64");
        Assert.True(code == 0, err + output);
        Assert.Contains("passing budget 64", output);
    }

    /// <summary>
    /// inspect's work table under a budget: at 64K on 8 ranks (l_p 512) the late ranks read about B = 1024 passed rows,
    /// not 3,584, so contiguous APB's ranks are more even (max/mean pairs 1.069 against 1.263 without it). 1024 is the
    /// default there (twice the default l_p).
    /// </summary>
    [Fact]
    public void InspectShowsTheWorkPerRankUnderABudget()
    {
        foreach (var given in new[] { new[] { "--passing-budget", "1024" }, [] })
        {
            var (code, output, err) = CliRun.Apb(["inspect", "--context", "64k", "--ranks", "8", .. given]);
            Assert.True(code == 0, err + output);
            Assert.Contains("l_a 2048, l_p 512, passing budget 1024", output);
            Assert.Contains("imbalance (max/mean pairs) 1.069", output);
        }
        var (_, none, _) = CliRun.Apb("inspect", "--context", "64k", "--ranks", "8", "--passing-budget", "0");
        Assert.Contains("imbalance (max/mean pairs) 1.263", none);
        Assert.Contains("no passing budget", none);
        var refused = CliRun.Apb("inspect", "--context", "64k", "--passing-budget", "1024");
        Assert.Equal(1, refused.Code);
        Assert.Contains("--passing-budget needs --ranks", refused.Err);
    }

    /// <summary>
    /// Best first, every prefix of m rows is the selection of m rows (as a set) and the whole is the ascending
    /// selection reordered; coarse scores make many ties, which go to the earlier row in both orders.
    /// </summary>
    [Theory]
    [InlineData(200, 3, 40, false)]
    [InlineData(200, 3, 40, true)]
    [InlineData(31, 2, 31, true)]
    [InlineData(9, 4, 1, false)]
    public void EveryPrefixOfTheBestFirstOrderIsASelection(int rows, int heads, int count, bool coarse)
    {
        var rng = new Random(rows + count);
        var scores = Enumerable.Range(0, rows * heads).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
        if (coarse) for (int i = 0; i < scores.Length; i++) scores[i] = MathF.Round(scores[i]);
        var ops = new CpuPassingOps();
        var b = new CpuBackend();
        var t = Filled(b, rows, heads, i => scores[i]);
        using var best = ops.AllocateRows(count, heads);
        ops.SelectPassing(t, heads, best, bestFirst: true);
        var order = new int[count * heads];
        ops.Download(best, order);
        var pooled = CpuPassingOps.MaxPool(scores, rows, heads);
        for (int h = 0; h < heads; h++)
        {
            var mine = Enumerable.Range(0, count).Select(i => order[i * heads + h]).ToArray();
            for (int m = 1; m <= count; m++)
            {
                var want = CpuPassingOps.Select(scores, rows, heads, m);
                Assert.Equal(Enumerable.Range(0, m).Select(i => want[i * heads + h]), mine.Take(m).Order());
            }
            // Best first: pooled scores never rise along the order, and equal ones keep the earlier row first.
            for (int i = 1; i < count; i++)
            {
                float prev = pooled[mine[i - 1] * heads + h], cur = pooled[mine[i] * heads + h];
                Assert.True(prev > cur || (prev == cur && mine[i - 1] < mine[i]), $"head {h}: rows {mine[i - 1]} then {mine[i]}");
            }
        }
    }

    /// <summary>
    /// One layer of contiguous APB on 4 in-process ranks with the query-aware scorer really selecting: under budget B,
    /// rank r's rows come out exactly as in the budget-free run with l_p = min(l_p, floor(B / r)), whose senders pass
    /// their top floor(B / r) rows, the set the budgeted rank reads (in another order, hence the float tolerance).
    /// </summary>
    [Theory]
    [InlineData(4, 400, 16, 16)]
    [InlineData(4, 400, 12, 10)]
    [InlineData(3, 301, 14, 18)]
    public void EachRankSeesWhatTheBudgetFreePlanOfItsShareShowsIt(int ranks, int n, int passing, int budget)
    {
        var c = LoadModel("llama-tiny").Config;
        const int anchor = 6, query = 2;
        var rope = new RopeTable(c.Rope, c.HeadDim);
        float[][] Layer(SequencePlan plan)
        {
            var group = new InProcessGroup(ranks, TimeSpan.FromSeconds(30));
            return group.Run(r =>
            {
                var b = new CpuBackend();
                var comm = group.Communicator(r, b);
                int a = plan.AnchorRows(r), rows = plan.LocalRows(r);
                var pos = plan.LocalPositions(r);
                // Row values by what the row is: the anchor's i-th row, or the context at its global position.
                int Id(int i) => i < a ? i : 1000 + pos[i];
                Tensor Make(int kind, int cols) => RowsById(b, rows, cols, kind, Id);
                Tensor q = Make(1, c.QDim), k = Make(2, c.KvDim), v = Make(3, c.KvDim), o = b.Allocate(rows, c.QDim);
                using (var att = new ApbAttention(b, c, rope, plan, comm, null)) att.Attend(0, q, k, v, o);
                return Values(b, o);
            }, r => $"apb layer on rank {r}");
        }
        var budgeted = SequencePlan.Apb(n, ranks, anchor, passing, query, 0, budget);
        Assert.True(Enumerable.Range(0, ranks).Any(budgeted.ChunkSendsBestFirst), "the case must read prefixes");
        var got = Layer(budgeted);
        var unbudgeted = Layer(SequencePlan.Apb(n, ranks, anchor, passing, query, 0));
        for (int r = 1; r < ranks; r++)
        {
            int share = Math.Min(passing, budget / r);
            var want = Layer(SequencePlan.Apb(n, ranks, anchor, passing: share, query, 0))[r];
            double err = RelativeError(got[r], want);
            Assert.True(err < 1e-5, $"rank {r}: budget {budget} against l_p {share} without one: relative error {err:E3}");
            if (share < passing)
                Assert.True(RelativeError(got[r], unbudgeted[r]) > 1e-4, $"rank {r} reads fewer rows than without a budget: its output must differ");
        }
    }

    [Theory]
    [InlineData(StrategyKind.Apb, 4, 90, 6)]
    [InlineData(StrategyKind.ApbBalanced, 3, 90, 6)]
    public void ABudgetNoRankReachesChangesNothingAndATightOneChangesTheLogits(StrategyKind kind, int ranks, int n, int passing)
    {
        var m = LoadModel("embedded");
        var context = Ids(n, n + 5, m.Config.VocabSize);
        var query = Ids(4, n + 6, m.Config.VocabSize);
        var o = Options(kind, ranks) with { AnchorLength = 10, PassingLength = passing, Scorer = ScorerKind.Retaining,
            RetainingHeadsPath = Path.Combine(m.Dir, "retaining_heads.safetensors") };
        List<float[]> Logits(StrategyOptions options)
        {
            using var s = Session(m, options);
            return Generate(s, context, query, 3).Logits;
        }
        var none = Logits(o);
        // Balanced on H ranks has 2H chunks: the last reads from 2H - 1 senders of ceil(l_p / 2).
        int reach = kind == StrategyKind.Apb ? (ranks - 1) * passing : (2 * ranks - 1) * ((passing + 1) / 2);
        var loose = Logits(o with { PassingBudget = reach });
        for (int i = 0; i < none.Count; i++) Assert.Equal(0.0, RelativeError(loose[i], none[i]));
        var tight = Logits(o with { PassingBudget = passing });
        Assert.True(RelativeError(tight[0], none[0]) > 1e-5, $"{kind.Name()}: a budget of {passing} must change what the late ranks read");
    }

    /// <summary>Balanced APB on H ranks under a budget is contiguous APB on 2H ranks with ceil(l_p / 2) under the same budget.</summary>
    [Fact]
    public void BalancedUnderABudgetIsContiguousOnTwiceTheRanksUnderIt()
    {
        var m = LoadModel("embedded-random");
        const int ranks = 3, n = 101, passing = 7, budget = 5;
        var context = Ids(n, 11, m.Config.VocabSize);
        var query = Ids(3, 12, m.Config.VocabSize);
        var o = Options(StrategyKind.ApbBalanced, ranks) with { AnchorLength = 8, Scorer = ScorerKind.Query, PassingBudget = budget };
        using var balanced = Session(m, o with { PassingLength = passing });
        using var contiguous = Session(m, o with { Strategy = StrategyKind.Apb, Ranks = 2 * ranks, PassingLength = (passing + 1) / 2 });
        var (tb, lb) = Generate(balanced, context, query, 3);
        var (tc, lc) = Generate(contiguous, context, query, 3);
        Assert.True(balanced.Plan!.ChunkSendsBestFirst(0));
        Assert.Equal(tc, tb);
        for (int i = 0; i < lb.Count; i++)
            Assert.True(RelativeError(lb[i], lc[i]) < 1e-5, $"step {i}: balanced x{ranks} vs contiguous x{2 * ranks} under budget {budget}");
    }
}
