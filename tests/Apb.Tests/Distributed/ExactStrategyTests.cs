using Apb.Engine;
using Apb.Model;
using Apb.Strategies;
using Apb.Runtime;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Distributed;

/// <summary>Ring, zigzag ring and Ulysses are exact: their logits equal single-rank attention for any H and n.</summary>
public class ExactStrategyTests
{
    public static TheoryData<string, StrategyKind, int, int> Cases()
    {
        var d = new TheoryData<string, StrategyKind, int, int>();
        // GQA (6 heads over 2) + llama3 rope for the ring, MQA + linear rope for zigzag; context lengths not divisible by the rank count.
        foreach (var (ranks, n) in new[] { (1, 37), (2, 37), (3, 61), (4, 50), (8, 101) })
        {
            d.Add("llama-tiny", StrategyKind.Ring, ranks, n);
            d.Add("qwen2-tiny", StrategyKind.Zigzag, ranks, n);
        }
        d.Add("llama-tiny", StrategyKind.Zigzag, 3, 200);
        d.Add("qwen2-tiny", StrategyKind.Ring, 8, 13); // l_b = 2: the last rank holds 1 real token and one pad
        foreach (var (ranks, n) in new[] { (1, 37), (2, 45), (4, 103) }) d.Add("llama-headdim-sharded", StrategyKind.Ulysses, ranks, n);
        d.Add("embedded-random", StrategyKind.Ulysses, 2, 77);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void LogitsEqualFull(string model, StrategyKind strategy, int ranks, int n)
    {
        var m = LoadModel(model);
        var context = Ids(n, n * 31 + ranks, m.Config.VocabSize);
        var query = Ids(5, n, m.Config.VocabSize);
        using var s = Session(m, Options(strategy, ranks));
        var got = s.AllLogits(context, query);
        var want = FullLogits(m, context, query);
        Assert.Equal(want.Length, got.Length);
        double err = RelativeError(got, want);
        Assert.True(err < 1e-5, $"{strategy} x {ranks} on {model}, n = {n}: relative error {err:E3} against full");
        // The query rows come from the star phase: check them on their own too.
        int v = m.Config.VocabSize;
        double qErr = RelativeError(got.AsSpan(n * v), want.AsSpan(n * v));
        Assert.True(qErr < 1e-5, $"{strategy} x {ranks}: query rows relative error {qErr:E3}");
    }

    [Theory]
    [InlineData("llama-tiny", StrategyKind.Ring, 3)]
    [InlineData("qwen2-tiny", StrategyKind.Zigzag, 4)]
    [InlineData("llama-headdim-sharded", StrategyKind.Ulysses, 4)]
    [InlineData("llama-tiny", StrategyKind.Full, 1)]
    public void GreedyGenerationEqualsFull(string model, StrategyKind strategy, int ranks)
    {
        var m = LoadModel(model);
        var context = Ids(58, 7, m.Config.VocabSize);
        var query = Ids(4, 8, m.Config.VocabSize);
        var local = new LocalSession(new LlamaModel(m.Config, m.Weights, new Backends.Cpu.CpuBackend()), 80);
        var (want, wantLogits) = Generate(local, context, query, 10);
        using var s = Session(m, Options(strategy, ranks));
        var (got, gotLogits) = Generate(s, context, query, 10);
        Assert.Equal(want, got);
        for (int i = 0; i < wantLogits.Count; i++)
        {
            double err = RelativeError(gotLogits[i], wantLogits[i]);
            Assert.True(err < 1e-5, $"{strategy} x {ranks}: step {i} logits relative error {err:E3}");
        }
        Assert.Equal(context.Length + query.Length + 10, s.Length);
    }

    [Fact]
    public void EmptyQueryMovesTheLastContextTokenIntoTheExactPhase()
    {
        var m = LoadModel("llama-tiny");
        var context = Ids(40, 3, m.Config.VocabSize);
        var want = FullLogits(m, context, []);
        using var s = Session(m, Options(StrategyKind.Ring, 3));
        var got = s.Prefill(context, []);
        int v = m.Config.VocabSize;
        Assert.True(RelativeError(got, want.AsSpan((context.Length - 1) * v, v)) < 1e-5);
    }
}
