using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Checkpoints;
using Apb.Model;
using Apb.Runtime;
using Apb.Strategies;
using Xunit;

namespace Apb.Tests.Model;

/// <summary>
/// Mistral's sliding window: the attention op's window against the textbook reference over the edges of the CPU
/// kernel's blocking, and a windowed model whose three ways of running a sequence (one prefill, chunked prefill,
/// token by token) take different routes through FullAttention (the op's window, a window over a shifted cache, a
/// slice of the cache without any window) and must agree.
/// </summary>
public class SlidingWindowTests
{
    static CpuTensor Random(Random rng, int rows, int cols)
    {
        var t = new CpuTensor(rows, cols);
        var s = t.Span;
        for (int i = 0; i < s.Length; i++)
        {
            float x = (float)(rng.NextDouble() * 2 - 1);
            s[i] = x >= 0 ? x + 0.01f : x - 0.01f;
        }
        return t;
    }

    [Theory]
    [InlineData(0)]
    [InlineData(128)]
    public void WindowedAttentionMatchesTheReference(int vectorBits)
    {
        int heads = 6, kvHeads = 2, d = 32;
        // (Tq, Tk): decode rows, prefill, a chunk after a cache, more queries than keys; windows below, at and above a
        // 64-key block and beyond every key.
        foreach (var (tq, tk) in new[] { (1, 1), (1, 50), (37, 37), (37, 129), (129, 37), (200, 200), (70, 300) })
            foreach (int window in new[] { 1, 5, 64, 65, 100, 1000 })
            {
                var rng = new Random(tq * 7919 + tk * 31 + window);
                var q = Random(rng, tq, heads * d); var k = Random(rng, tk, kvHeads * d); var v = Random(rng, tk, kvHeads * d);
                var o = new CpuTensor(tq, heads * d); o.Span.Fill(float.NaN);
                var lse = new CpuTensor(tq, heads);
                CpuAttention.Run(q, k, v, heads, kvHeads, AttentionMask.Causal, o, lse, vectorBits == 0 ? CpuAttention.WidestVector : vectorBits, window);
                var ro = new CpuTensor(tq, heads * d); var rl = new CpuTensor(tq, heads);
                ReferenceAttention.Run(q, k, v, heads, kvHeads, AttentionMask.Causal, ro, rl, window);
                for (int i = 0; i < tq; i++)
                    for (int h = 0; h < heads; h++)
                    {
                        string what = $"Tq {tq} Tk {tk} window {window} row {i} head {h}";
                        float want = rl.Row(i)[h], got = lse.Row(i)[h];
                        if (float.IsNegativeInfinity(want))
                        {
                            Assert.True(float.IsNegativeInfinity(got), $"{what}: sees no key but lse is {got}");
                            continue;
                        }
                        Assert.True(Math.Abs(got - want) < 1e-5 * Math.Max(1, Math.Abs(want)), $"{what}: lse {got} vs {want}");
                        double err = ReferenceFixture.RelativeError(o.Row(i).Slice(h * d, d), ro.Row(i).Slice(h * d, d));
                        Assert.True(err < 1e-5, $"{what}: relative error {err:E2}");
                    }
            }
    }

    [Fact]
    public void ReferenceWindowKeepsTheLastWindowKeys()
    {
        // Row 9 of 10 against 10 keys with a window of 3 sees keys 7, 8, 9; in a chunk of 2 rows after 8 cached keys the
        // first row (position 8) sees 6, 7, 8.
        Assert.Equal(new[] { 7, 8, 9 }, Enumerable.Range(0, 10).Where(j => ReferenceAttention.Visible(9, j, 10, 10, AttentionMask.Causal, 3)));
        Assert.Equal(new[] { 6, 7, 8 }, Enumerable.Range(0, 10).Where(j => ReferenceAttention.Visible(0, j, 2, 10, AttentionMask.Causal, 3)));
    }

    [Theory]
    [InlineData(-1, AttentionMask.Causal)]
    [InlineData(4, AttentionMask.None)]
    public void WindowNeedsACausalMask(int window, AttentionMask mask)
    {
        var t = new CpuTensor(4, 8);
        var e = Assert.Throws<ArgumentException>(() => new CpuBackend().Attention(t, t, t, 1, 1, mask, new CpuTensor(4, 8), null, window));
        Assert.Contains("sliding window", e.Message);
    }

    static ModelConfig Windowed(int? window) =>
        ModelShapes.Get("tiny") with { Architecture = "MistralForCausalLM", SlidingWindow = window, Rope = new RopeConfig(RopeType.Default, 10000) };

    static (LlamaModel Model, int[] Ids) Model(int? window, int length = 45)
    {
        var config = Windowed(window);
        var backend = new CpuBackend();
        // Larger weights than RandomWeights' 0.02 init: peaked attention, so what the window hides shows in the logits.
        var weights = LlamaWeights.Build(config, t =>
        {
            var values = new float[t.Shape.Aggregate(1L, (a, b) => a * b)];
            var rng = new Random(t.Name.GetHashCode(StringComparison.Ordinal) ^ 12345);
            for (int i = 0; i < values.Length; i++) values[i] = t.Role == LlamaWeights.Role.Norm ? 1f : (float)(rng.NextDouble() * 0.4 - 0.2);
            return backend.Load(TestWeights.Matrix(t.Name, values, t.Shape));
        });
        var ids = Enumerable.Range(0, length).Select(i => (i * 37 + 11) % config.VocabSize).ToArray();
        return (new LlamaModel(config, weights, backend), ids);
    }

    static float[] Row(float[] all, int row, int vocab) => all.AsSpan(row * vocab, vocab).ToArray();

    [Fact]
    public void PrefillChunkedPrefillAndDecodeAgree()
    {
        const int window = 7;
        var (model, ids) = Model(window);
        int vocab = model.Config.VocabSize;
        float[] whole;
        using (var s = new LocalSession(model, ids.Length)) whole = s.AllLogits(ids);

        // Chunks of 13 and 32 rows: the second attends over a cache cut at its first row's window.
        using (var s = new LocalSession(model, ids.Length))
        {
            var first = s.AllLogits(ids[..13]);
            var second = s.AllLogits(ids[13..]);
            for (int t = 0; t < ids.Length; t++)
            {
                var got = t < 13 ? Row(first, t, vocab) : Row(second, t - 13, vocab);
                double e = ReferenceFixture.RelativeError(got, Row(whole, t, vocab));
                Assert.True(e < 1e-5, $"chunked prefill, position {t}: relative error {e:E2}");
            }
        }

        // One token at a time: each step's keys are exactly its window, with no mask beyond causal.
        using (var s = new LocalSession(model, ids.Length))
        {
            var logits = s.Prefill([ids[0]], []);
            for (int t = 0; t < ids.Length; t++)
            {
                if (t > 0) logits = s.Decode(ids[t]);
                double e = ReferenceFixture.RelativeError(logits, Row(whole, t, vocab));
                Assert.True(e < 1e-5, $"decode, position {t}: relative error {e:E2}");
            }
        }
    }

    [Fact]
    public void TheWindowChangesLogitsOnlyPastIt()
    {
        var (windowed, ids) = Model(7);
        var (full, _) = Model(null);
        int vocab = windowed.Config.VocabSize;
        float[] a, b;
        using (var s = new LocalSession(windowed, ids.Length)) a = s.AllLogits(ids);
        using (var s = new LocalSession(full, ids.Length)) b = s.AllLogits(ids);
        // Up to position 6 every key is inside the window; from position 7 on the first keys are hidden.
        for (int t = 0; t < 7; t++)
            Assert.True(ReferenceFixture.RelativeError(Row(a, t, vocab), Row(b, t, vocab)) < 1e-6, $"position {t} differs inside the window");
        double late = ReferenceFixture.RelativeError(Row(a, ids.Length - 1, vocab), Row(b, ids.Length - 1, vocab));
        Assert.True(late > 1e-3, $"the last position differs from full attention by only {late:E2}: the window is not applied");
    }

    [Theory]
    [InlineData(StrategyKind.Apb)]
    [InlineData(StrategyKind.Ring)]
    [InlineData(StrategyKind.Zigzag)]
    [InlineData(StrategyKind.Ulysses)]
    [InlineData(StrategyKind.Star)]
    public void SequenceParallelStrategiesRefuseAWindow(StrategyKind strategy)
    {
        var e = Assert.Throws<ApbException>(() => new StrategyOptions { Strategy = strategy, Ranks = 2 }.Validate(Windowed(4096)));
        Assert.Contains("sliding window of 4096 tokens", e.Message);
        Assert.Contains("--strategy full", e.Message);
        new StrategyOptions { Strategy = StrategyKind.Full }.Validate(Windowed(4096));
        new StrategyOptions { Strategy = strategy, Ranks = 2 }.Validate(Windowed(null));
    }
}
