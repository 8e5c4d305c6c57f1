using Apb.Backends;
using Apb.Backends.Cuda;
using Apb.Checkpoints;
using Apb.Model;
using Apb.Runtime;
using Apb.Strategies;
using static Apb.Gpu.Tests.GpuCheck;

namespace Apb.Gpu.Tests;

/// <summary>
/// The fp8 KV cache's kernels (CudaBackend.Fp8.cs): the append's codes and scales bit for bit against
/// <see cref="Fp8E4M3"/> on the host, and the fp8 split-KV decode against the CPU's attention over the values the codes
/// stand for, with the same tolerance rule as the bf16 decode. Destination and cache rows sit in the middle of poisoned
/// buffers (code 0x7F is NaN, scales NaN): a write outside the rows or a read past the last key shows up.
/// </summary>
public static class Fp8KvCases
{
    const byte Poison = 0xFF;   // a NaN code, and 0xFFFFFFFF is a NaN scale

    /// <summary>
    /// A whole model's logits with fp8 caches, GPU against CPU: twice the bf16 sessions' 5e-2. The two sides quantize
    /// keys and values that already differ by bf16 rounding (the GPU's projections are bf16, the CPU's fp32), and a value
    /// near the midpoint of two codes takes a different code on each side: one step of E4M3 is 1/8 to 1/16 of the value,
    /// where bf16's is 1/128. The first GPU run measured 5.45e-2 (fixture session) and 6.73e-2 (APB x4) against 5e-2; the
    /// kernels themselves are held bit for bit (append, quantize) and at the bf16 decode's tolerance (decode) above.
    /// </summary>
    public const double Fp8SessionLimit = 1e-1;

    public static IEnumerable<GpuCase> All()
    {
        // d = 32 and 96: the fused kernel does not take them (a bf16 append, then the quantize kernel).
        foreach (var (t, heads, kv, d) in new[] { (1, 32, 8, 128), (29, 12, 2, 64), (3, 28, 4, 128), (4, 8, 4, 32), (2, 8, 2, 96) })
            yield return new("fp8kv", $"rope_append_fp8 {t} rows, {heads}/{kv} heads x d={d}", c => RopeAppend(c, t, heads, kv, d));
        foreach (var (rows, cols) in new[] { (1, 1024), (37, 128), (300, 256) })
        {
            yield return new("fp8kv", $"quantize {rows} rows x {cols} (AppendKv)", c => Quantize(c, rows, cols));
            yield return new("fp8kv", $"dequantize {rows} rows x {cols} (ReadKv)", c => Dequantize(c, rows, cols));
        }
        yield return new("fp8kv", "APB on 4 CUDA ranks with fp8 caches against 4 CPU ranks (small shape, random weights)", ApbSession);
        foreach (var (rows, cols) in new[] { (5, 1024), (16, 128) })
            yield return new("fp8kv", $"scatter quantize {rows} rows x {cols} (ScatterRowsKv)", c => Scatter(c, rows, cols));
        foreach (var version in new[] { DecodeKernelVersion.V2, DecodeKernelVersion.V2Prefetch, DecodeKernelVersion.V3 })
            foreach (var (lengths, heads, kv, d) in new[] { (new[] { 1, 70, 4097, 300 }, 32, 8, 128), (new[] { 9000, 1, 64 }, 16, 2, 64) })
                yield return new("fp8kv", $"decode batch {DecodeCases.Name(version)}: Tk {string.Join('/', lengths)} h={heads}/{kv} d={d}",
                    c => c.WithDecodeKernel(version, () => DecodeBatch(c, lengths, heads, kv, d)));
        foreach (var version in new[] { DecodeKernelVersion.V2, DecodeKernelVersion.V2Prefetch, DecodeKernelVersion.V3 })
            foreach (var (tq, tk, heads, kv, d, causal) in new[]
                     {
                         (1, 1, 32, 8, 128, true), (1, 1000, 32, 8, 128, true), (2, 4097, 32, 8, 128, true), (1, 65536, 32, 8, 128, true),
                         (1, 3000, 6, 2, 64, true), (3, 700, 8, 4, 64, false), (1, 65536, 32, 8, 128, false),
                         (4, 2000, 32, 8, 128, true), (2, 1500, 16, 2, 64, false),   // 16 pairs per KV head: version 3 only
                     })
                // Version 2 takes at most 8 pairs per KV head, and runs the long caches once (they take seconds on the host).
                if (version == DecodeKernelVersion.V3 || (tq * heads / kv <= 8 && (version == DecodeKernelVersion.V2Prefetch || tk <= 4097)))
                    yield return new("fp8kv", $"decode {DecodeCases.Name(version)} Tq={tq} Tk={tk} h={heads}/{kv} d={d} {(causal ? "causal" : "full")}",
                        c => c.WithDecodeKernel(version, () => Decode(c, tq, tk, heads, kv, d, causal)));
        foreach (var version in new[] { DecodeKernelVersion.V2Prefetch, DecodeKernelVersion.V3 })
            foreach (var (tq, tk, heads, kv, d) in new[] { (1, 3000, 32, 8, 128), (2, 777, 8, 2, 64) })
                yield return new("fp8kv", $"decode {DecodeCases.Name(version)} Tq={tq} Tk={tk} h={heads}/{kv} d={d} causal, scale groups x 1/16 .. x 16",
                    c => c.WithDecodeKernel(version, () => Decode(c, tq, tk, heads, kv, d, causal: true, uneven: true)));
        foreach (var (version, limit) in new[] { (DecodeKernelVersion.V3, 16), (DecodeKernelVersion.V2Prefetch, 8) })
            yield return new("fp8kv", $"decode {DecodeCases.Name(version)} refuses 24 pairs per KV head (3 rows x 8 heads per KV head), naming its limit of {limit}",
                c => c.WithDecodeKernel(version, () => DecodeRefusesWideCall(c, limit)));
        yield return new("fp8kv", "a chunk of 40 rows after 300 attends to earlier rows as stored and to its own as computed (KvCache.Attend's fresh rows)", ChunkAttend);
    }

    /// <summary>
    /// APB on 4 ranks with fp8 caches (random weights of the small shape): each rank caches its block as fp8 rows and
    /// the star phase reads them, on 4 CUDA backends of this GPU against 4 CPU ranks (the reference rounding); the
    /// query's logits and 3 decode steps', the CPU's greedy tokens fed to both.
    /// </summary>
    static void ApbSession(GpuCheck c)
    {
        var config = ModelShapes.Get("small");
        var options = new StrategyOptions
        {
            Strategy = StrategyKind.Apb, Ranks = 4, FallbackBelow = 0, AnchorLength = 64, PassingLength = 32, Scorer = ScorerKind.Query,
            KvCache = KvCacheDType.Fp8,
        };
        var ids = Enumerable.Range(0, 1040).Select(_ => c.Rng.Next(config.VocabSize)).ToArray();
        using var gpu = new GroupSession(RankGroup.Create(config, options, _ => new CudaBackend(c.Gpu.Context.Device.Ordinal),
            b => RandomWeights.Create(config, b)), anchorInsertAt: 0, decodeBudget: 8, ownsGroup: true);
        using var cpu = new GroupSession(RankGroup.Create(config, options, _ => new Backends.Cpu.CpuBackend(),
            b => RandomWeights.Create(config, b)), anchorInsertAt: 0, decodeBudget: 8, ownsGroup: true);
        var want = cpu.Prefill(ids[..1024], ids[1024..]);
        var got = gpu.Prefill(ids[..1024], ids[1024..]);
        c.Compare("query logits (star phase over fp8 caches)", got, want, Fp8SessionLimit, "fp8 cache, apb x4");
        for (int i = 0; i < 3; i++)
        {
            int next = Array.IndexOf(want, want.Max());
            want = cpu.Decode(next); got = gpu.Decode(next);
            c.Compare($"decode step {i + 1}", got, want, Fp8SessionLimit, "fp8 cache, apb x4");
        }
    }

    /// <summary>
    /// q and k rotated as the bf16 append rotates them (bit for bit), and each stored row the host codec's bytes for
    /// the bf16 append's rotated key and for the value (bit for bit), in the middle of a poisoned buffer.
    /// </summary>
    static void RopeAppend(GpuCheck c, int t, int heads, int kv, int d)
    {
        var table = new RopeTable(new RopeConfig(RopeType.Default, 500000.0), d);
        var positions = Enumerable.Range(0, t).Select(_ => c.Rng.Next(131072)).ToArray();
        var q = c.Rand((long)t * heads * d, 3f); var k = c.Rand((long)t * kv * d, 3f); var v = c.Rand((long)t * kv * d);
        // A zero group (scale 1) and a huge value (its group's scale carries it) among the values.
        for (int i = 0; i < KvCacheDTypes.Fp8Group; i++) v[i] = 0f;
        v[^1] = 30000f;

        var bq = c.OnGpu(q, t, heads * d); var bk = c.OnGpu(k, t, kv * d); var bv = c.OnGpu(v, t, kv * d);
        var bKd = c.Gpu.Allocate(t, kv * d); var bVd = c.Gpu.Allocate(t, kv * d);
        c.Gpu.RopeAppend(bq, bk, bv, heads, kv, positions, table, bKd, bVd);

        var gq = c.OnGpu(q, t, heads * d); var gk = c.OnGpu(k, t, kv * d); var gv = c.OnGpu(v, t, kv * d);
        var kAll = PoisonedFp8(c, t + 10, kv * d); var vAll = PoisonedFp8(c, t + 10, kv * d);
        c.Gpu.RopeAppendKv(gq, gk, gv, heads, kv, positions, table, kAll.RowSlice(5, t), vAll.RowSlice(5, t), KvCacheDType.Fp8);
        c.Compare("q = bf16 append's q", Down(c.Gpu, gq), Down(c.Gpu, bq), 0, "apb_rope_append_fp8");
        c.Compare("k in place = bf16 append's k", Down(c.Gpu, gk), Down(c.Gpu, bk), 0, "apb_rope_append_fp8");
        CompareRows(c, "k rows", kAll, 5, t, Down(c.Gpu, bKd), kv * d, "apb_rope_append_fp8");
        CompareRows(c, "v rows", vAll, 5, t, Down(c.Gpu, bVd), kv * d, "apb_rope_append_fp8");
    }

    /// <summary>bf16 rows into fp8 rows 3.. of a poisoned buffer: the host codec's bytes, nothing written elsewhere.</summary>
    static void Quantize(GpuCheck c, int rows, int cols)
    {
        var x = c.Rand((long)rows * cols, 2f);
        x[0] = 1e-30f; x[^1] = -500f;   // a tiny and a large value: subnormal codes, a scale above 1
        var src = c.OnGpu(x, rows, cols);
        int from = rows > 1 ? 1 : 0, n = rows - from;   // from a row past the first where there is one: the source offset
        var all = PoisonedFp8(c, n + 6, cols);
        c.Gpu.AppendKv(src, from, all, 3, n, KvCacheDType.Fp8);
        var want = Down(c.Gpu, src);
        CompareRows(c, "rows", all, 3, n, want.AsSpan(from * cols, n * cols).ToArray(), cols, "apb_fp8_quantize");
    }

    /// <summary>fp8 rows read back as bf16: decode(code) x scale rounded to bf16, exactly.</summary>
    static void Dequantize(GpuCheck c, int rows, int cols)
    {
        var x = c.Rand((long)rows * cols, 2f);
        var values = new float[x.Length];
        var bytes = CudaBackend.EncodeFp8Rows(x, cols, values);
        var all = PoisonedFp8(c, rows + 4, cols);
        c.Gpu.UploadBytes(bytes, all.RowSlice(2, rows));
        var got = c.Gpu.ReadKv(all.RowSlice(2, rows), cols, KvCacheDType.Fp8, values: true);
        c.Compare("values", Down(c.Gpu, got), values.Select(Bf16).ToArray(), 0, "apb_fp8_dequantize");
    }

    /// <summary>Rows [at, at + t) of <paramref name="all"/> are the host codec's bytes for <paramref name="values"/>; the other rows are untouched.</summary>
    static void CompareRows(GpuCheck c, string what, Tensor all, int at, int t, float[] values, int cols, string kernel)
    {
        int rowBytes = CudaBackend.Fp8RowBytes(cols);
        var got = new byte[all.Rows * rowBytes];
        c.Gpu.DownloadBytes(all, got);
        var want = CudaBackend.EncodeFp8Rows(values, cols, null);
        int wrong = 0, outside = 0, used = CudaBackend.Fp8UsedBytes(cols);   // the padding after the scales is nobody's
        for (int i = 0; i < want.Length; i++) wrong += i % rowBytes < used && got[at * rowBytes + i] != want[i] ? 1 : 0;
        for (int r = 0; r < all.Rows; r++)
            if ((r < at || r >= at + t) && got.AsSpan(r * rowBytes, used).IndexOfAnyExcept(Poison) >= 0) outside++;
        c.Record($"{what}: bytes = the host codec's", wrong + outside, 0, wrong + outside == 0,
            $"{wrong} of {t * used} bytes differ; {outside} rows outside written", kernel);
    }

    /// <summary>
    /// The fp8 decode against the CPU's fp32 attention over decode(code) x scale of random keys and values quantized on
    /// the host: the kernel is judged on the values the cache holds, not on what fp8 loses (that is the accuracy
    /// harness's question).
    /// </summary>
    static void Decode(GpuCheck c, int tq, int tk, int heads, int kv, int d, bool causal, bool uneven = false)
    {
        int cols = kv * d;
        var q = c.Rand((long)tq * heads * d, 1.5f); var k = c.Rand((long)tk * cols, 1.5f); var v = c.Rand((long)tk * cols);
        if (uneven) { Uneven(k, cols, 3); Uneven(v, cols, 5); }
        var (gk, kValues) = CacheOf(c, k, cols); var (gv, vValues) = CacheOf(c, v, cols);
        var r = AttentionReference.Of(c, q, kValues, vValues, tq, tk, heads, kv, d, causal);
        var gq = c.OnGpu(q, tq, heads * d);
        var go = c.Poisoned(tq, heads * d);
        var gl = c.Poisoned(tq, heads, CudaDType.F32);
        c.Gpu.DecodeAttentionFp8(gq, gk, gv, heads, kv, causal ? AttentionMask.Causal : AttentionMask.None, go, gl);
        c.Compare("out", Down(c.Gpu, go), r.RefO, r.OutLimit, "split-kv fp8");
        c.CompareLse("lse", Down(c.Gpu, gl), r.RefL, r.LseLimit, "split-kv fp8");
    }

    /// <summary>
    /// Scale groups of very different magnitudes (x 1/16 .. x 16 by key and group of 32), so that a kernel applying a
    /// group's scale to the wrong key or dims is far off; with groups alike (plain random values) it would not show.
    /// </summary>
    static void Uneven(float[] x, int cols, int salt)
    {
        for (long i = 0; i < x.Length; i++)
        {
            long t = i / cols, grp = i % cols / KvCacheDTypes.Fp8Group;
            x[i] *= MathF.Pow(2, (t * 7 + grp * salt) % 9 - 4);
        }
    }

    /// <summary>
    /// A call wider than the fp8 decode kernel takes (24 (query row, head) pairs per KV head: version 3 takes 16,
    /// version 2 8) is refused with an error that names the limit; the fp8 cache has no wider kernel (KvCache.Attend
    /// reads such calls through bf16).
    /// </summary>
    static void DecodeRefusesWideCall(GpuCheck c, int limit)
    {
        const int tq = 3, tk = 70, heads = 16, kv = 2, d = 64;
        var (gk, _) = CacheOf(c, c.Rand((long)tk * kv * d), kv * d); var (gv, _) = CacheOf(c, c.Rand((long)tk * kv * d), kv * d);
        var gq = c.OnGpu(c.Rand((long)tq * heads * d), tq, heads * d);
        var go = c.Poisoned(tq, heads * d);
        try
        {
            c.Gpu.DecodeAttentionFp8(gq, gk, gv, heads, kv, AttentionMask.None, go, null);
            c.Record("refused", 1, 0, false, "no error for 24 pairs per KV head", "split-kv fp8");
        }
        catch (ArgumentException e)
        {
            c.Record("refused, the limit named", 0, 0, e.Message.Contains($"at most {limit} pairs"), e.Message, "split-kv fp8");
        }
    }

    /// <summary>
    /// A later prefill chunk over an fp8 cache on the device: 300 rows stored, then a chunk of 40 appended and attended
    /// to with its rows as computed (<see cref="Attention.KvCache.Attend"/> with fresh rows: the earlier rows read back
    /// through the dequantize kernel, the chunk's copied after them). Against the CPU's attention over the values the
    /// host codec gives the first 300 rows and the chunk's own bf16 values.
    /// </summary>
    static void ChunkAttend(GpuCheck c)
    {
        const int heads = 8, kv = 2, d = 64, cols = kv * d, old = 300, rows = 40, all = old + rows;
        var k = c.Rand((long)all * cols, 1.5f); var v = c.Rand((long)all * cols); var q = c.Rand((long)rows * heads * d, 1.5f);
        var kValues = new float[k.Length]; var vValues = new float[v.Length];
        CudaBackend.EncodeFp8Rows(k[..(old * cols)], cols, kValues);
        CudaBackend.EncodeFp8Rows(v[..(old * cols)], cols, vValues);
        Array.Copy(k, old * cols, kValues, old * cols, rows * cols);
        Array.Copy(v, old * cols, vValues, old * cols, rows * cols);
        var r = AttentionReference.Of(c, q, kValues, vValues, rows, all, heads, kv, d, causal: true);

        var gk = c.OnGpu(k, all, cols); var gv = c.OnGpu(v, all, cols);
        using var cache = new Attention.KvCache(c.Gpu, cols, 64, KvCacheDType.Fp8);
        cache.Append(gk, gv, 0, old);
        cache.Append(gk, gv, old, rows);   // grows: the stored rows move with it
        var go = c.Poisoned(rows, heads * d);
        cache.Attend(c.OnGpu(q, rows, heads * d), heads, kv, AttentionMask.Causal, go, null, fresh: (gk.RowSlice(old, rows), gv.RowSlice(old, rows)));
        c.Compare("out", Down(c.Gpu, go), r.RefO, r.OutLimit, "KvCache.Attend, fp8, fresh rows");
    }

    /// <summary>Row i into row 1 + i of its own poisoned buffer, quantized: the host codec's bytes, nothing else written.</summary>
    static void Scatter(GpuCheck c, int rows, int cols)
    {
        var src = c.OnGpu(c.Rand((long)rows * cols, 2f), rows, cols);
        var want = Down(c.Gpu, src);
        var buffers = Enumerable.Range(0, rows).Select(i => PoisonedFp8(c, 3 + i, cols)).ToArray();
        c.Gpu.ScatterRowsKv(src, buffers.Select((t, i) => t.RowSlice(1 + i, 1)).ToArray(), KvCacheDType.Fp8);
        for (int i = 0; i < rows; i++)
            CompareRows(c, $"row {i}", buffers[i], 1 + i, 1, want.AsSpan(i * cols, cols).ToArray(), cols, "apb_fp8_scatter_quantize");
    }

    /// <summary>Each sequence's row against its own fp8 cache in one call, against the CPU over each cache's dequantized values.</summary>
    static void DecodeBatch(GpuCheck c, int[] lengths, int heads, int kv, int d)
    {
        int b = lengths.Length, cols = kv * d;
        var q = c.Rand((long)b * heads * d, 1.5f);
        var keys = new Tensor[b]; var values = new Tensor[b]; var refs = new AttentionReference[b];
        for (int i = 0; i < b; i++)
        {
            var k = c.Rand((long)lengths[i] * cols, 1.5f); var v = c.Rand((long)lengths[i] * cols);
            (keys[i], var kValues) = CacheOf(c, k, cols); (values[i], var vValues) = CacheOf(c, v, cols);
            refs[i] = AttentionReference.Of(c, q.AsSpan(i * heads * d, heads * d).ToArray(), kValues, vValues, 1, lengths[i], heads, kv, d, causal: false);
        }
        var gq = c.OnGpu(q, b, heads * d);
        var go = c.Poisoned(b, heads * d);
        c.Gpu.DecodeAttentionKv(gq, keys, values, heads, kv, go, KvCacheDType.Fp8);
        var got = Down(c.Gpu, go);
        for (int i = 0; i < b; i++)
            c.Compare($"sequence {i} (Tk {lengths[i]})", got.AsSpan(i * heads * d, heads * d).ToArray(), refs[i].RefO, refs[i].OutLimit, "split-kv fp8 batch");
    }

    /// <summary>
    /// Host values [rows, cols] encoded by the host codec into the first rows of a poisoned fp8 buffer with 17 rows to
    /// spare (a read past the last key shows up), and the values the rows stand for.
    /// </summary>
    static (Tensor Rows, float[] Values) CacheOf(GpuCheck c, float[] x, int cols)
    {
        int rows = x.Length / cols;
        var values = new float[x.Length];
        var bytes = CudaBackend.EncodeFp8Rows(x, cols, values);
        var all = PoisonedFp8(c, rows + 17, cols);
        c.Gpu.UploadBytes(bytes, all.RowSlice(0, rows));
        return (all.RowSlice(0, rows), values);
    }

    static Tensor PoisonedFp8(GpuCheck c, int rows, int cols)
    {
        var t = c.Gpu.AllocateKv(rows, cols, KvCacheDType.Fp8);
        var poison = new byte[(long)rows * t.Cols];
        Array.Fill(poison, Poison);
        c.Gpu.UploadBytes(poison, t);
        return t;
    }
}
