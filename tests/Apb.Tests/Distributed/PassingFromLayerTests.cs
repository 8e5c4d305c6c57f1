using Apb.Strategies;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Distributed;

/// <summary>
/// APB with --passing-from-layer N (StrategyOptions.PassingFromLayer): layers below N pass nothing. At the ends it must be
/// exactly one of two known runs: N = 0 is APB as it was, N = the model's layer count is APB with l_p 0; in between it
/// is neither.
/// </summary>
public class PassingFromLayerTests
{
    [Theory]
    [InlineData(StrategyKind.Apb, 4, 61)]
    [InlineData(StrategyKind.ApbBalanced, 4, 61)]
    public void TheEndsAreApbAndApbWithoutPassingAndTheMiddleIsNeither(StrategyKind kind, int ranks, int n)
    {
        var m = LoadModel("embedded-random");
        string heads = RetainingHeadsFile.Write(m.Config, 16, seed: 5);
        var context = Ids(n, n + 2, m.Config.VocabSize);
        var query = Ids(4, n + 3, m.Config.VocabSize);
        var o = Options(kind, ranks) with { Scorer = ScorerKind.Retaining, RetainingHeadsPath = heads, AnchorLength = 6, PassingLength = 4 };
        int layers = m.Config.NumHiddenLayers;
        Assert.True(layers >= 2, "the middle case needs two layers");

        float[] Logits(StrategyOptions options)
        {
            using var s = Session(m, options);
            return s.AllLogits(context, query);
        }
        var apb = Logits(o);
        var none = Logits(o with { PassingLength = 0 });
        Assert.True(RelativeError(none, apb) > 1e-4, "passing must matter in this setting for the test to say anything");

        Assert.Equal(0.0, RelativeError(Logits(o with { PassingFromLayer = 0 }), apb));
        Assert.Equal(0.0, RelativeError(Logits(o with { PassingFromLayer = layers }), none));
        var middle = Logits(o with { PassingFromLayer = 1 });
        Assert.True(RelativeError(middle, apb) > 1e-6 && RelativeError(middle, none) > 1e-6,
            $"{kind.Name()}: passing from layer 1 is neither APB nor APB without passing");
    }

    [Fact]
    public void OutOfRangeLayersAreRefusedAndThePlanSaysWhereItPasses()
    {
        var m = LoadModel("embedded-random");
        int layers = m.Config.NumHiddenLayers;
        foreach (int bad in new[] { -1, layers + 1 })
        {
            var e = Assert.Throws<ApbException>(() => (Options(StrategyKind.Apb, 4) with { PassingFromLayer = bad }).Validate(m.Config));
            Assert.Contains($"--passing-from-layer {bad} is outside 0..{layers}", e.Message);
        }
        var plan = SequencePlanner.Plan(Options(StrategyKind.Apb, 4) with { PassingFromLayer = 1, FallbackBelow = 0 }, 400, 4, 0);
        Assert.Contains("passing from layer 1", plan.ToString());
        Assert.DoesNotContain("passing from layer", SequencePlanner.Plan(Options(StrategyKind.Apb, 4) with { FallbackBelow = 0 }, 400, 4, 0).ToString());
    }

    /// <summary>eval ruler refuses a layer the model does not have before it makes any sample, and labels the rows it runs.</summary>
    [Fact]
    public void EvalRulerChecksTheLayerFirstAndLabelsTheSetting()
    {
        var (code, output, err) = CliRun.Apb("eval", "ruler", "--tasks", "niah_single_1", "--length", "1k", "--samples", "1", "-s", "apb", "--passing-from-layer", "99");
        Assert.Equal(1, code);
        Assert.Contains("--passing-from-layer 99 is outside 0..6", err);
        Assert.DoesNotContain("samples", err);
        (code, output, err) = CliRun.Apb("eval", "ruler", "--tasks", "niah_single_1", "--length", "1k", "--samples", "1", "-s", "apb", "--passing-from-layer", "1");
        Assert.True(code == 0, err + output);
        Assert.Contains("passing from layer 1", output);
    }
}
