using Apb.Attention;
using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Backends.Cuda;
using Apb.Checkpoints;
using Apb.Model;
using Apb.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace Apb.Tests.Distributed;

/// <summary>
/// The fp8 KV cache on the CPU, the reference the device's fp8 cache is tested against: every stored row holds the
/// values its E4M3 codes stand for (a scale per 32 values), whichever way it was written; the option's parsing and
/// refusals; and the device's byte layout as the host encodes it.
/// </summary>
public class Fp8KvCacheTests(ITestOutputHelper output)
{
    static CpuTensor Random(int rows, int cols, int seed)
    {
        var rng = new Random(seed);
        var t = new CpuTensor(rows, cols);
        for (int i = 0; i < t.Data.Length; i++) t.Data[i] = (float)(rng.NextDouble() * 6 - 3) * (i % 7 == 0 ? 40 : 1);
        return t;
    }

    static float[] Rounded(CpuTensor t, int row, int rows)
    {
        var r = new float[rows * t.Cols];
        for (int i = 0; i < rows; i++)
        {
            t.Row(row + i).CopyTo(r.AsSpan(i * t.Cols, t.Cols));
            Fp8E4M3.RoundGroups(r.AsSpan(i * t.Cols, t.Cols), KvCacheDTypes.Fp8Group);
        }
        return r;
    }

    [Fact]
    public void AppendedRowsHoldTheValuesTheirCodesStandForAcrossGrowth()
    {
        var cache = new KvCache(new CpuBackend(), cols: 64, capacity: 2, KvCacheDType.Fp8);
        var k = Random(40, 64, 1); var v = Random(40, 64, 2);
        cache.Append(k, v, rowStart: 3, rows: 5);
        cache.Append(k, v, rowStart: 8, rows: 32);   // grows
        Assert.Equal(37, cache.Length);
        Assert.Equal(Rounded(k, 3, 37), ((CpuTensor)cache.K).Data.AsSpan(0, 37 * 64).ToArray());
        Assert.Equal(Rounded(v, 3, 37), ((CpuTensor)cache.V).Data.AsSpan(0, 37 * 64).ToArray());
        Assert.NotEqual(k.Data.AsSpan(3 * 64, 37 * 64).ToArray(), ((CpuTensor)cache.K).Data.AsSpan(0, 37 * 64).ToArray()); // fp8 changed them
    }

    [Fact]
    public void RopeAppendRoundsTheRotatedKeysAndTheValues()
    {
        var b = new CpuBackend();
        int heads = 4, kv = 2, d = 64, t = 3;
        var table = new RopeTable(new RopeConfig(RopeType.Default, 10000.0), d);
        int[] positions = [0, 1, 2];
        var q = Random(t, heads * d, 3); var k = Random(t, kv * d, 4); var v = Random(t, kv * d, 5);
        var q2 = Random(t, heads * d, 3); var k2 = Random(t, kv * d, 4);
        var plainK = new CpuTensor(t, kv * d); var plainV = new CpuTensor(t, kv * d);
        ((IBackend)b).RopeAppend(q2, k2, v, heads, kv, positions, table, plainK, plainV);

        var cache = new KvCache(b, kv * d, 8, KvCacheDType.Fp8);
        cache.RopeAppend(q, k, v, heads, kv, positions, table);
        Assert.Equal(q2.Data, q.Data);                                    // q rotated as the plain append rotates it
        Assert.Equal(Rounded(plainK, 0, t), ((CpuTensor)cache.K).Data.AsSpan(0, t * kv * d).ToArray());
        Assert.Equal(Rounded(plainV, 0, t), ((CpuTensor)cache.V).Data.AsSpan(0, t * kv * d).ToArray());
    }

    [Fact]
    public void AutoCachesStayExactAndRefuseNothing()
    {
        var cache = new KvCache(new CpuBackend(), cols: 64, capacity: 4);
        var k = Random(4, 64, 6);
        cache.Append(k, k);
        Assert.Equal(k.Data, ((CpuTensor)cache.K).Data);
        Assert.Equal(KvCacheDType.Auto, cache.DType);
    }

    [Fact]
    public void ABatchedStepsScatteredRowsAreRoundedToo()
    {
        IBackend b = new CpuBackend();
        var caches = Enumerable.Range(0, 3).Select(_ => new KvCache(b, 64, 4, KvCacheDType.Fp8)).ToArray();
        var rows = Random(3, 64, 9);
        var dst = caches.Select(c => c.AppendRawRows(1).K).ToArray();
        b.ScatterRowsKv(rows, dst, KvCacheDType.Fp8);
        for (int i = 0; i < 3; i++)
            Assert.Equal(Rounded(rows, i, 1), ((CpuTensor)caches[i].K).Data.AsSpan(0, 64).ToArray());
    }

    [Fact]
    public void RowsOfAWidthThatIsNotAMultipleOf32AreRefused()
    {
        var cache = new KvCache(new CpuBackend(), cols: 24, capacity: 4, KvCacheDType.Fp8);
        var e = Assert.Throws<ApbException>(() => cache.Append(Random(1, 24, 7), Random(1, 24, 8)));
        Assert.Contains("multiple of 32", e.Message);
    }

    [Fact]
    public void ParsesTheNamesUsersType()
    {
        Assert.Equal(KvCacheDType.Auto, KvCacheDTypes.Parse(null));
        Assert.Equal(KvCacheDType.Auto, KvCacheDTypes.Parse("bf16"));
        Assert.Equal(KvCacheDType.Fp8, KvCacheDTypes.Parse("FP8"));
        Assert.Equal(KvCacheDType.Fp8, KvCacheDTypes.Parse("fp8_e4m3"));
        var e = Assert.Throws<ApbException>(() => KvCacheDTypes.Parse("int4"));
        Assert.Contains("expected auto", e.Message);
    }

    /// <summary>
    /// The embedded model on 200 tokens in no language, with the fixture families' bound (e4m3 keeps 3 mantissa bits: a
    /// stored value may be 1/16 off). Measured over the three steps: run 6 of the model 0.006 / 0.042 / 0.011, run 9
    /// 0.005 / 0.067 / 0.032, run 12 (shipped since) 0.006 / 0.027 / 0.022; 0.05, the bound before run 9, was run 6's
    /// 0.042 with little room. Each
    /// step's error is in the test's output: <c>dotnet test tests/Apb.Tests -c Release --filter
    /// "FullyQualifiedName~ASessionWithAnFp8CacheStaysCloseToTheExactOne" --logger "console;verbosity=detailed"</c>.
    /// </summary>
    [Fact]
    public void ASessionWithAnFp8CacheStaysCloseToTheExactOne() =>
        AssertFp8SessionTracksTheExactOne(Repo.EmbeddedModel, _ => Enumerable.Range(5, 200).Select(i => i * 7 % 1900 + 10).ToArray(), 0.1);

    /// <summary>
    /// The model at <paramref name="dir"/> through a session with an exact cache and one with an fp8 cache, the exact
    /// one's greedy tokens fed to both: the prefill's logits equal (a prefill attends to its own rows as computed), each
    /// of 3 decode steps' differ (they read stored rows; 0 would mean no rounding happened) by less than
    /// <paramref name="limit"/>.
    /// </summary>
    void AssertFp8SessionTracksTheExactOne(string dir, Func<ModelConfig, int[]> promptFor, double limit)
    {
        using var ckpt = CheckpointWeights.Open(dir);
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        var model = LlamaModel.Load(config, ckpt, new CpuBackend());
        int[] prompt = promptFor(config);
        string name = Path.GetFileName(dir);
        using var exact = new LocalSession(model, prompt.Length + 3);
        using var fp8 = new LocalSession(model, prompt.Length + 3, kvDType: KvCacheDType.Fp8);
        var a = exact.Prefill(prompt, []); var b = fp8.Prefill(prompt, []);
        for (int step = 0; step < 4; step++)
        {
            double err = RelErr(b, a);
            output.WriteLine($"{name} step {step}: fp8 logits {err:E3} from the exact cache's");
            if (step == 0) Assert.True(err == 0, $"{name} prefill: fp8 logits {err:E2} from the exact cache's (a prefill attends to its rows as computed)");
            else Assert.True(err > 0 && err < limit, $"{name} step {step}: fp8 logits {err:E2} from the exact cache's (0 would mean no rounding happened)");
            if (step == 3) break;
            int next = Array.IndexOf(a, a.Max());
            a = exact.Decode(next); b = fp8.Decode(next);
        }
    }

    /// <summary>
    /// A later chunk of several rows attends to the earlier rows as stored (rounded) and to its own as computed: the
    /// same output as plain attention over those rows put together, and not the output of reading its own rows back.
    /// Fresh rows that are not the cache's last are refused.
    /// </summary>
    [Fact]
    public void AChunkAttendsToEarlierRowsAsStoredAndToItsOwnAsComputed()
    {
        IBackend b = new CpuBackend();
        int heads = 4, kv = 2, d = 32, cols = kv * d, old = 6, rows = 3;
        var k = Random(old + rows, cols, 11); var v = Random(old + rows, cols, 12); var q = Random(rows, heads * d, 13);
        var cache = new KvCache(b, cols, 4, KvCacheDType.Fp8);
        cache.Append(k, v, 0, old);
        cache.Append(k, v, old, rows);
        var kNew = new CpuTensor(rows, cols); var vNew = new CpuTensor(rows, cols);
        b.Copy(k, old, 0, kNew, 0, 0, rows, cols); b.Copy(v, old, 0, vNew, 0, 0, rows, cols);

        var got = new CpuTensor(rows, heads * d);
        cache.Attend(q, heads, kv, AttentionMask.Causal, got, null, fresh: (kNew, vNew));

        var kAll = new CpuTensor(old + rows, cols); var vAll = new CpuTensor(old + rows, cols);
        Rounded(k, 0, old).CopyTo(kAll.Data, 0); Rounded(v, 0, old).CopyTo(vAll.Data, 0);
        b.Copy(kNew, 0, 0, kAll, old, 0, rows, cols); b.Copy(vNew, 0, 0, vAll, old, 0, rows, cols);
        var want = new CpuTensor(rows, heads * d);
        b.Attention(q, kAll, vAll, heads, kv, AttentionMask.Causal, want, null);
        Assert.Equal(want.Data, got.Data);

        var stored = new CpuTensor(rows, heads * d);
        cache.Attend(q, heads, kv, AttentionMask.Causal, stored, null);
        Assert.NotEqual(want.Data, stored.Data);   // reading its own rows back would have rounded them

        var e = Assert.Throws<ArgumentException>(() =>
            cache.Attend(q, heads, kv, AttentionMask.Causal, got, null, from: 0, count: old, fresh: (kNew, vNew)));
        Assert.Contains("fresh rows", e.Message);
    }

    /// <summary>sqrt(sum (a - b)^2 / sum b^2).</summary>
    static double RelErr(float[] a, float[] b)
    {
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++) { double d = a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
        return Math.Sqrt(num / den);
    }

    /// <summary>
    /// Fixture families through a session with an fp8 cache, prefill then decode: Mistral's sliding window (24 rows, the
    /// prompt longer than it), Qwen3's q/k norms, a dynamic-NTK table; each near its exact cache and not equal to it.
    /// </summary>
    [Theory]
    [InlineData("mistral-tiny")]
    [InlineData("qwen3-tiny")]
    [InlineData("llama-dynamic-tiny")]
    public void FixtureFamiliesRunWithAnFp8Cache(string fixture) =>
        AssertFp8SessionTracksTheExactOne(Repo.Fixture(fixture),
            config => Enumerable.Range(0, 40).Select(i => (i * 13 + 5) % (config.VocabSize - 1) + 1).ToArray(), 0.1);

    [Fact]
    public void TheDevicesRowLayoutIsCodesThenScales()
    {
        var x = new float[2 * 64];
        for (int i = 0; i < x.Length; i++) x[i] = (i - 60) * 0.37f;
        var values = new float[x.Length];
        var bytes = CudaBackend.EncodeFp8Rows(x, 64, values);
        Assert.Equal(2 * CudaBackend.Fp8RowBytes(64), bytes.Length);
        Assert.Equal(64 + 2 * 4, CudaBackend.Fp8UsedBytes(64));
        Assert.Equal(80, CudaBackend.Fp8RowBytes(64));                 // padded to 16 bytes
        Assert.Equal(1152, CudaBackend.Fp8RowBytes(1024));             // Llama-3-8B's rows need none
        var rounded = (float[])x.Clone();
        for (int r = 0; r < 2; r++) Fp8E4M3.RoundGroups(rounded.AsSpan(r * 64, 64), 32);
        Assert.Equal(rounded, values);
        // Row 1, group 1: its scale after its 64 codes, then its codes decode to the values.
        float scale = BitConverter.ToSingle(bytes, 80 + 64 + 4);
        Assert.Equal(Fp8E4M3.RowScale(x.AsSpan(64 + 32, 32)), scale);
        for (int i = 0; i < 32; i++) Assert.Equal(values[96 + i], Fp8E4M3.Decode(bytes[80 + 32 + i]) * scale);
    }

    [Fact]
    public void GenerateRunsWithAnFp8CacheAndSaysSo()
    {
        var (code, output, err) = CliRun.Apb("generate", "--model", Repo.TinyModel, "--prompt", "a b c", "--chat", "false", "--max-tokens", "3",
                                             "--kv-cache-dtype", "fp8");
        Assert.True(code == 0, err);
        Assert.Contains("strategy full, fp8 KV cache", err);
        Assert.False(string.IsNullOrWhiteSpace(output));
    }

    [Fact]
    public void ApbOnRanksRunsWithFp8CachesAndSaysSo()
    {
        var (code, output, err) = CliRun.Apb("generate", "--model", Repo.TinyModel, "--prompt", string.Join(' ', Enumerable.Repeat("a b c d", 40)),
                                             "--chat", "false", "--max-tokens", "3", "--strategy", "apb", "--ranks", "2", "--fallback-below", "0",
                                             "--kv-cache-dtype", "fp8");
        Assert.True(code == 0, err);
        Assert.Contains("fp8 KV cache", err);
        Assert.False(string.IsNullOrWhiteSpace(output));
    }

    /// <summary>inspect's per-rank table counts the caches in the dtype asked for; the flag needs --context.</summary>
    [Fact]
    public void InspectCountsTheCachesInTheDTypeAskedFor()
    {
        static string FullRow(string output) => output.Split('\n').Single(l => l.TrimStart().StartsWith("full "));
        var bf16 = CliRun.Apb("inspect", "--model", Repo.TinyModel, "--context", "64k");
        var fp8 = CliRun.Apb("inspect", "--model", Repo.TinyModel, "--context", "64k", "--kv-cache-dtype", "fp8");
        Assert.Equal(0, bf16.Code); Assert.Equal(0, fp8.Code);
        Assert.Contains("bf16 KV cache", bf16.Out);
        Assert.Contains("fp8 KV cache", fp8.Out);
        Assert.NotEqual(FullRow(bf16.Out), FullRow(fp8.Out));
        Cli.HostileCliTests.AssertUserError(CliRun.Apb("inspect", "--model", Repo.TinyModel, "--kv-cache-dtype", "fp8"), "--kv-cache-dtype needs --context");
    }

    [Fact]
    public void AnUnknownDTypeIsAClearError() =>
        Cli.HostileCliTests.AssertUserError(
            CliRun.Apb("generate", "--model", Repo.TinyModel, "--prompt", "a b", "--chat", "false", "--kv-cache-dtype", "fp16"),
            "unknown KV cache dtype 'fp16'");
}
