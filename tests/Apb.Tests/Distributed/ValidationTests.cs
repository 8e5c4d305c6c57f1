using Apb.Strategies;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Distributed;

/// <summary>Bad requests fail before any work with an ApbException that says what to change.</summary>
public class ValidationTests
{
    static ApbException Prefill(string model, StrategyOptions o, int n, int q = 3)
    {
        var m = LoadModel(model);
        return Assert.Throws<ApbException>(() =>
        {
            using var s = Session(m, o);
            s.Prefill(Ids(n, 1, m.Config.VocabSize), Ids(q, 2, m.Config.VocabSize));
        });
    }

    [Fact]
    public void MoreRanksThanContextTokens() =>
        Assert.Contains("the context has 5 tokens but 8 ranks", Prefill("llama-tiny", Options(StrategyKind.Ring, 8), 6, 0).Message);

    [Fact]
    public void AnchorLongerThanTheBlock() =>
        Assert.Contains("anchor of 30 tokens is longer than the block of 10 tokens",
            Prefill("embedded-random", Options(StrategyKind.Apb, 4) with { AnchorLength = 30, PassingLength = 2 }, 40).Message);

    [Fact]
    public void PassingLongerThanTheBlock() =>
        Assert.Contains("passing length of 12 tokens is longer than the block of 10 tokens",
            Prefill("embedded-random", Options(StrategyKind.Apb, 4) with { AnchorLength = 8, PassingLength = 12 }, 40).Message);

    [Fact]
    public void QueryLongerThanTheAnchor() =>
        Assert.Contains("query of 6 tokens is longer than the anchor of 4 tokens",
            Prefill("embedded-random", Options(StrategyKind.Apb, 4) with { AnchorLength = 4, PassingLength = 2 }, 40, 6).Message);

    [Fact]
    public void UlyssesWithRanksNotDividingKvHeads()
    {
        var m = LoadModel("llama-headdim-sharded"); // 4 KV heads
        var e = Assert.Throws<ApbException>(() => Session(m, Options(StrategyKind.Ulysses, 3)));
        Assert.Contains("use --ranks N where N divides num_key_value_heads=4, or choose ring/zigzag", e.Message);
    }

    [Fact]
    public void RetainingScorerWithoutAFile()
    {
        var m = LoadModel("embedded-random");
        var e = Assert.Throws<ApbException>(() => Session(m, Options(StrategyKind.Apb, 2) with { Scorer = ScorerKind.Retaining }));
        Assert.Contains("--retaining-heads", e.Message);
    }

    [Fact]
    public void QueryAwareScorerWithoutAQueryInTheAnchor() =>
        Assert.Contains("query-aware scorer",
            Prefill("embedded-random", Options(StrategyKind.Apb, 4) with { AnchorLength = 0, PassingLength = 2 }, 40).Message);

    [Fact]
    public void FullOnSeveralRanks()
    {
        var m = LoadModel("embedded-random");
        Assert.Contains("strategy full runs on one rank",
            Assert.Throws<ApbException>(() => Session(m, Options(StrategyKind.Full, 2))).Message);
    }

    [Fact]
    public void NamesParseAndUnknownNamesAreErrors()
    {
        Assert.Equal(StrategyKind.Zigzag, StrategyOptions.ParseStrategy("ZigZag"));
        Assert.Equal(ScorerKind.Retaining, ScorerChoice.Parse("retaining"));
        Assert.Equal(ScorerKind.QueryOnly, ScorerChoice.Parse("Query-Only"));
        Assert.Equal(ScorerKind.RetainingOnly, ScorerChoice.Parse("retaining-only"));
        Assert.Null(ScorerChoice.Parse("auto"));
        Assert.Null(ScorerChoice.Parse(null));
        Assert.Contains("expected full, ring, zigzag, ulysses, star, apb, apb-balanced or auto",
            Assert.Throws<ApbException>(() => StrategyOptions.ParseStrategy("tree")).Message);
        Assert.Contains("expected auto, retaining, retaining-only, query or query-only", Assert.Throws<ApbException>(() => ScorerChoice.Parse("x")).Message);
    }
}
