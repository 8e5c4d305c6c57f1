using Apb.Strategies;
using Apb.Strategies.Apb;
using Apb.Tests.Cli;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Distributed;

/// <summary>
/// --novelty-weight (<see cref="StrategyOptions.NoveltyWeight"/>): its checks, its label, and that it reaches the
/// scorer on every rank of APB and balanced APB.
/// </summary>
public class NoveltyWeightTests
{
    [Fact]
    public void AWeightIsFiniteNotNegativeAndOnlyForAScorerWithTheTerm()
    {
        foreach (var scorer in new[] { ScorerKind.Query, ScorerKind.Retaining })
        {
            ScorerChoice.CheckNoveltyWeight(scorer, null);
            ScorerChoice.CheckNoveltyWeight(scorer, 0f);
            ScorerChoice.CheckNoveltyWeight(scorer, 0.25f);
            ScorerChoice.CheckNoveltyWeight(scorer, 8f);
            foreach (float bad in new[] { -0.5f, float.NaN, float.PositiveInfinity, float.NegativeInfinity })
            {
                var e = Assert.Throws<ApbException>(() => ScorerChoice.CheckNoveltyWeight(scorer, bad));
                Assert.Contains("--novelty-weight must be a finite number >= 0", e.Message);
                Assert.Contains("got " + bad.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message);
            }
        }
        foreach (var (scorer, with) in new[] { (ScorerKind.RetainingOnly, "retaining"), (ScorerKind.QueryOnly, "query") })
        {
            ScorerChoice.CheckNoveltyWeight(scorer, null);
            var e = Assert.Throws<ApbException>(() => ScorerChoice.CheckNoveltyWeight(scorer, 0f));
            Assert.Contains("has none", e.Message);
            Assert.Contains($"use --scorer {with} with --novelty-weight", e.Message);
        }
        // The options carry the same check.
        var o = Options(StrategyKind.Apb, 2) with { NoveltyWeight = -1f };
        Assert.Throws<ApbException>(() => o.Validate(LoadModel("llama-tiny").Config));
    }

    [Fact]
    public void AGivenWeightReplacesTheScorersOwnAndIsNamedWhenItDiffers()
    {
        Assert.Equal(NoveltyTerm.WithHeads, ScorerChoice.NoveltyWeight(ScorerKind.Retaining));
        Assert.Equal(NoveltyTerm.Weight, ScorerChoice.NoveltyWeight(ScorerKind.Query));
        Assert.Equal(0.25f, ScorerChoice.NoveltyWeight(ScorerKind.Retaining, 0.25f));
        Assert.Equal(0f, ScorerChoice.NoveltyWeight(ScorerKind.Query, 0f));
        Assert.Equal(0f, ScorerChoice.NoveltyWeight(ScorerKind.RetainingOnly, 0.25f));

        Assert.Equal("retaining heads", ScorerChoice.Label(ScorerKind.Retaining));
        Assert.Equal("retaining heads", ScorerChoice.Label(ScorerKind.Retaining, NoveltyTerm.WithHeads));
        Assert.Equal("retaining heads, novelty weight 0.25", ScorerChoice.Label(ScorerKind.Retaining, 0.25f));
        Assert.Equal("query-aware scorer, novelty weight 0", ScorerChoice.Label(ScorerKind.Query, 0f));
        Assert.Equal("apb x4 (retaining heads, novelty weight 1)",
            (Options(StrategyKind.Apb, 4) with { Scorer = ScorerKind.Retaining, NoveltyWeight = 1f }).Describe());
        var plan = SequencePlanner.Plan(Options(StrategyKind.Apb, 4) with { AnchorLength = 16, PassingLength = 8, NoveltyWeight = 0.75f }, 100, 5, 0);
        Assert.Equal(0.75f, plan.NoveltyTermWeight);
        Assert.Contains("query-aware scorer, novelty weight 0.75", plan.ToString());
    }

    /// <summary>
    /// On every rank: weight 0 is the scorer without the term (the same logits, bit for bit: the term is not run), a weight
    /// given equal to the scorer's own changes nothing, and a much larger one passes other rows, so other logits.
    /// </summary>
    [Theory]
    [InlineData(StrategyKind.Apb, ScorerKind.Retaining, ScorerKind.RetainingOnly)]
    [InlineData(StrategyKind.Apb, ScorerKind.Query, ScorerKind.QueryOnly)]
    [InlineData(StrategyKind.ApbBalanced, ScorerKind.Retaining, ScorerKind.RetainingOnly)]
    [InlineData(StrategyKind.ApbBalanced, ScorerKind.Query, ScorerKind.QueryOnly)]
    public void WeightZeroIsTheScorerWithoutTheTermAndAnotherWeightReachesTheRanks(StrategyKind strategy, ScorerKind scorer, ScorerKind without)
    {
        var m = LoadModel("embedded-random");
        int vocab = m.Config.VocabSize;
        var context = Ids(96, 11, vocab);
        var query = Ids(4, 12, vocab);
        var o = Options(strategy, 4) with
        {
            AnchorLength = 8, PassingLength = 4,
            RetainingHeadsPath = scorer.UsesHeads() ? RetainingHeadsFile.Write(m.Config, 16, seed: 5) : null,
        };
        float[] Logits(StrategyOptions x)
        {
            using var s = Session(m, x);
            var logits = s.AllLogits(context, query);
            Assert.True(s.Plan!.ChunkSentRows(0) < s.Plan.ChunkRealRows(0), "the case must score and drop rows");
            return logits;
        }
        var dflt = Logits(o with { Scorer = scorer });
        Assert.Equal(Logits(o with { Scorer = without }), Logits(o with { Scorer = scorer, NoveltyWeight = 0f }));
        Assert.Equal(dflt, Logits(o with { Scorer = scorer, NoveltyWeight = ScorerChoice.NoveltyWeight(scorer) }));
        double change = RelativeError(Logits(o with { Scorer = scorer, NoveltyWeight = 8f }), dflt);
        Assert.True(change > 1e-4, $"weight 8 against the default: relative error {change:E3}, as if the weight never reached the scorer");
    }

    [Fact]
    public void TheCommandsTakeItAndRefuseABadOneSayingWhatToDo()
    {
        string[] ruler = ["eval", "ruler", "--model", Repo.TinyModel, "--tasks", "niah_single_1", "--length", "640", "--samples", "1",
            "--strategies", "apb", "--ranks", "2"];
        HostileCliTests.AssertUserError(CliRun.Apb([.. ruler, "--novelty-weight", "-1"]), "--novelty-weight must be a finite number >= 0");
        HostileCliTests.AssertUserError(CliRun.Apb([.. ruler, "--novelty-weight", "nan"]), "got NaN");
        HostileCliTests.AssertUserError(CliRun.Apb([.. ruler, "--novelty-weight", "half"]), "--novelty-weight takes a number >= 0 such as 0.5");
        HostileCliTests.AssertUserError(CliRun.Apb([.. ruler, "--novelty-weight", "0.5", "--scorer", "query-only"]), "--scorer query-only has none");
        // generate refuses it before it runs, also with full attention on one rank (no rank group checks its options there).
        HostileCliTests.AssertUserError(CliRun.Apb("generate", "--model", Repo.TinyModel, "--prompt", "a b", "--chat", "false", "--novelty-weight", "-2"),
            "--novelty-weight must be a finite number >= 0");
        using var tmp = new TempDir();
        HostileCliTests.AssertUserError(CliRun.Apb("bench", "prefill", "--model", Repo.TinyModel, "--device", "cpu", "--lengths", "256",
            "--strategies", "apb", "--scorer", "query-only", "--novelty-weight", "1", "--out", tmp.File("prefill")),
            "--scorer query-only has none");
    }
}
