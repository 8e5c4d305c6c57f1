using System.Text.Json;
using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Checkpoints;
using Apb.Model;
using Xunit;

namespace Apb.Tests.Bench;

/// <summary>`apb bench prefill` on the CPU with a tiny random-weight shape, and the random-weight generator itself.</summary>
public class BenchPrefillTests
{
    [Fact]
    public void PrefillBenchRunsEveryStrategyAndWritesSaneJson()
    {
        using var tmp = new TempDir();
        var dir = tmp.File("bench"); // not there yet: the bench creates it
        var (code, output, err) = CliRun.Apb("bench", "prefill", "--shape", "tiny", "--ranks", "2", "--lengths", "64,128",
            "--strategies", "full,ring,zigzag,ulysses,star,apb", "--query", "8", "--warmup", "1", "--repeats", "2", "--out", dir);
        Assert.True(code == 0, err + output);
        Assert.Contains("| apb | 128 | 2 |", output);
        Assert.True(File.Exists(Path.Combine(dir, "prefill.md")));

        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "prefill.json")));
        var root = doc.RootElement;
        Assert.Equal("tiny", root.GetProperty("model").GetString());
        Assert.Equal(2, root.GetProperty("shape").GetProperty("layers").GetInt32());
        var results = root.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(12, results.Count);
        var phases = root.GetProperty("phases").EnumerateArray().Select(p => p.GetString()!).ToArray();
        int query = root.GetProperty("query_tokens").GetInt32();
        Assert.Equal(8, query);
        foreach (var r in results)
        {
            string s = r.GetProperty("strategy").GetString()!;
            Assert.Equal("ok", r.GetProperty("status").GetString());
            Assert.Equal(s == "full" ? 1 : 2, r.GetProperty("ranks").GetInt32());
            // seconds and tokens_per_s feed every published table: the median of the timed runs, and the prefilled
            // tokens (context + query) over it.
            double secs = r.GetProperty("seconds").GetDouble();
            var runs = r.GetProperty("seconds_runs").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            Assert.Equal(2, runs.Length);
            Assert.All(runs, x => Assert.InRange(x, 1e-6, 60));
            AssertClose(Median(runs), secs, $"{s} n={r.GetProperty("length").GetInt32()}: seconds vs the median of seconds_runs");
            AssertClose((r.GetProperty("length").GetInt32() + query) / secs, r.GetProperty("tokens_per_s").GetDouble(),
                $"{s}: tokens_per_s vs (length + query) / seconds");
            var p = r.GetProperty("profile");
            var totals = p.GetProperty("rank_total_ms").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            Assert.Equal(s == "full" ? 1 : 2, totals.Length);
            Assert.All(totals, t => Assert.True(t > 0));
            Assert.InRange(p.GetProperty("imbalance").GetDouble(), 1.0, 1e3);
            int slow = p.GetProperty("slowest_rank").GetInt32();
            Assert.Equal(totals.Max(), totals[slow]);
            var slowest = p.GetProperty("slowest_phases_ms");
            Assert.All(phases, ph => Assert.True(slowest.GetProperty(ph).GetDouble() >= 0));
            // The phases add up to the slowest rank's total.
            Assert.InRange(phases.Sum(ph => slowest.GetProperty(ph).GetDouble()) - totals[slow], -1e-3, 1e-3);
            Assert.True(slowest.GetProperty("attention").GetDouble() > 0);
            if (s is "ring" or "zigzag" or "ulysses" or "apb")
                Assert.True(p.GetProperty("rank_sent_mb").EnumerateArray().Sum(x => x.GetDouble()) > 0, $"{s} sent nothing");
            if (s == "apb") Assert.StartsWith("l_a ", r.GetProperty("plan").GetString());
        }
    }

    /// <summary>The median as the bench tables define it: the middle run, or the mean of the middle two.</summary>
    internal static double Median(double[] xs)
    {
        var a = xs.Order().ToArray();
        return a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
    }

    /// <summary>Equal up to the rounding of a JSON number written from a double (relative 1e-9).</summary>
    internal static void AssertClose(double want, double got, string what) =>
        Assert.True(Math.Abs(got - want) <= 1e-9 * Math.Abs(want), $"{what}: expected {want:R}, found {got:R}");

    [Fact]
    public void MedianAndCloseRejectWhatTheyMust()
    {
        Assert.Equal(2.0, Median([3.0, 1.0, 2.0]));
        Assert.Equal(2.5, Median([4.0, 1.0, 2.0, 3.0]));
        // The checks above must fail on a best-of or mean-of field, and on tokens/s over the context alone.
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => AssertClose(Median([1.0, 2.0, 9.0]), new[] { 1.0, 2.0, 9.0 }.Average(), "mean as median"));
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => AssertClose(Median([1.0, 2.0, 9.0]), 1.0, "min as median"));
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => AssertClose((128 + 8) / 0.5, 128 / 0.5, "context only"));
    }

    [Fact]
    public void UnknownShapeAndBadLengthsAreErrorsNotCrashes()
    {
        var a = CliRun.Apb("bench", "prefill", "--shape", "nope", "--lengths", "64", "--out", Path.GetTempPath());
        Assert.Equal(1, a.Code);
        Assert.Contains("unknown model shape 'nope'", a.Err);
        var b = CliRun.Apb("bench", "prefill", "--shape", "tiny", "--lengths", "12q", "--out", Path.GetTempPath());
        Assert.Equal(1, b.Code);
        Assert.Contains("--lengths", b.Err);
    }

    /// <summary>--passing-budget reaches APB's plan (its row says the budget) and is refused without an APB strategy.</summary>
    [Fact]
    public void APassingBudgetIsRunAndNamedAndRefusedWithoutApb()
    {
        using var tmp = new TempDir();
        var dir = tmp.File("bench");
        var (code, output, err) = CliRun.Apb("bench", "prefill", "--shape", "tiny", "--ranks", "4", "--lengths", "256", "--strategies", "apb",
            "--passing-budget", "0", "--warmup", "0", "--repeats", "1", "--no-profile", "--out", dir);
        Assert.True(code == 0, err + output);
        Assert.Contains("no passing budget", File.ReadAllText(Path.Combine(dir, "prefill.json")));
        var refused = CliRun.Apb("bench", "prefill", "--shape", "tiny", "--lengths", "256", "--strategies", "full,star", "--passing-budget", "64",
            "--out", tmp.File("none"));
        Assert.Equal(1, refused.Code);
        Assert.Contains("runs no APB", refused.Err);
    }

    [Fact]
    public void LengthsAcceptAKSuffix()
    {
        using var tmp = new TempDir();
        var dir = tmp.File("bench");
        var (code, _, err) = CliRun.Apb("bench", "prefill", "--shape", "tiny", "--lengths", "1k", "--strategies", "full",
            "--warmup", "0", "--repeats", "1", "--no-profile", "--out", dir);
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "prefill.json")));
        Assert.Equal(1024, doc.RootElement.GetProperty("results")[0].GetProperty("length").GetInt32());
    }

    [Fact]
    public void Llama8BShapeMatchesTheCheckpointConfig()
    {
        var c = ModelShapes.Get("llama-3.1-8b");
        Assert.Equal((32, 4096, 32, 8, 128, 14336, 128256), (c.NumHiddenLayers, c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.IntermediateSize, c.VocabSize));
        Assert.Equal(new RopeConfig(RopeType.Llama3, 500000, 8, 1, 4, 8192), c.Rope);
        Assert.InRange(c.ParameterCount, 8.0e9, 8.1e9);
        Assert.True(c.MaxPositionEmbeddings >= 1 << 20);
    }

    [Fact]
    public void RandomWeightsAreDeterministicSmallAndRunOnTheCpu()
    {
        var c = ModelShapes.Get("tiny");
        using var b = new CpuBackend();
        var w1 = RandomWeights.Create(c, b, seed: 5);
        var w2 = RandomWeights.Create(c, b, seed: 5);
        var w3 = RandomWeights.Create(c, b, seed: 6);
        float[] Read(IWeight w) { var cw = (CpuWeight)w; var v = new float[cw.Rows * cw.Cols]; cw.ReadRows(0, v); return v; }
        var q1 = Read(w1.Layers[0].QProj);
        Assert.Equal(q1, Read(w2.Layers[0].QProj));
        Assert.NotEqual(q1, Read(w3.Layers[0].QProj));
        Assert.NotEqual(q1, Read(w1.Layers[1].QProj));
        Assert.All(q1, x => Assert.InRange(x, -RandomWeights.Scale * 1.01f, RandomWeights.Scale * 1.01f));
        double mean = q1.Average(x => (double)x), std = Math.Sqrt(q1.Average(x => (double)x * x));
        Assert.InRange(mean, -0.003, 0.003);
        Assert.InRange(std, 0.017, 0.023);
        Assert.All(Read(w1.Layers[0].InputLayernorm), x => Assert.Equal(1f, x));
        Assert.Equal(c.VocabSize, w1.EmbedTokens.Rows);

        // The model runs on them and gives finite logits.
        var model = new LlamaModel(c, w1, b);
        var session = new Apb.Runtime.LocalSession(model, 64);
        var logits = session.Prefill([1, 2, 3, 4, 5], []);
        Assert.Equal(c.VocabSize, logits.Length);
        Assert.All(logits, x => Assert.True(float.IsFinite(x)));
    }

    [Fact]
    public void HostValuesFollowTheDocumentedFormula()
    {
        // value = offset + (2u - 1) x scale, u = top 24 bits of the hash / 2^24: in [-scale, scale), and offset alone at scale 0.
        ulong key = RandomValues.Key(1, 0);
        for (long i = 0; i < 1000; i++)
        {
            float v = RandomValues.Value(key, i, 0.5f, 0f);
            Assert.InRange(v, -0.5f, 0.5f);
            Assert.Equal(1f, RandomValues.Value(key, i, 0f, 1f));
        }
    }
}
