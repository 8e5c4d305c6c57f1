using Apb.Backends;
using Apb.Backends.Cuda;
using Apb.Checkpoints;
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
    const byte NaNCode = 0x7F;

    public static IEnumerable<GpuCase> All()
    {
        foreach (var (t, heads, kv, d) in new[] { (1, 32, 8, 128), (29, 12, 2, 64), (3, 28, 4, 128) })
            yield return new("fp8kv", $"rope_append_fp8 {t} rows, {heads}/{kv} heads x d={d}", c => RopeAppend(c, t, heads, kv, d));
        foreach (var version in new[] { DecodeKernelVersion.V2, DecodeKernelVersion.V2Prefetch })
            foreach (var (tq, tk, heads, kv, d, causal) in new[]
                     {
                         (1, 1, 32, 8, 128, true), (1, 1000, 32, 8, 128, true), (2, 4097, 32, 8, 128, true), (1, 65536, 32, 8, 128, true),
                         (1, 3000, 6, 2, 64, true), (3, 700, 16, 2, 64, false), (1, 65536, 32, 8, 128, false),
                     })
                if (version == DecodeKernelVersion.V2Prefetch || tk <= 4097)   // the long caches once: they take seconds on the host
                    yield return new("fp8kv", $"decode {(version == DecodeKernelVersion.V2 ? "v2" : "v2pf")} Tq={tq} Tk={tk} h={heads}/{kv} d={d} {(causal ? "causal" : "full")}",
                    c => c.WithDecodeKernel(version, () => Decode(c, tq, tk, heads, kv, d, causal)));
    }

    /// <summary>
    /// q and k rotated as the bf16 append rotates them (bit for bit), and each stored row's codes and scales what
    /// <see cref="Fp8E4M3"/> makes of the bf16 rotated key and of the value (bit for bit).
    /// </summary>
    static void RopeAppend(GpuCheck c, int t, int heads, int kv, int d)
    {
        var table = new RopeTable(new RopeConfig(RopeType.Default, 500000.0), d);
        var positions = Enumerable.Range(0, t).Select(_ => c.Rng.Next(131072)).ToArray();
        var q = c.Rand((long)t * heads * d, 3f); var k = c.Rand((long)t * kv * d, 3f); var v = c.Rand((long)t * kv * d);
        // A zero group (scale 1) and a huge value (its group's scale carries it) among the values.
        for (int i = 0; i < Fp8Rows.Group; i++) v[i] = 0f;
        v[^1] = 30000f;

        var bq = c.OnGpu(q, t, heads * d); var bk = c.OnGpu(k, t, kv * d); var bv = c.OnGpu(v, t, kv * d);
        var bKd = c.Gpu.Allocate(t, kv * d); var bVd = c.Gpu.Allocate(t, kv * d);
        c.Gpu.RopeAppend(bq, bk, bv, heads, kv, positions, table, bKd, bVd);

        var gq = c.OnGpu(q, t, heads * d); var gk = c.OnGpu(k, t, kv * d); var gv = c.OnGpu(v, t, kv * d);
        var (kAll, vAll) = (PoisonedFp8(c, t + 10, kv * d), PoisonedFp8(c, t + 10, kv * d));
        c.Gpu.RopeAppendFp8(gq, gk, gv, heads, kv, positions, table, kAll.RowSlice(5, t), vAll.RowSlice(5, t));
        c.Compare("q = bf16 append's q", Down(c.Gpu, gq), Down(c.Gpu, bq), 0, "apb_rope_append_fp8");
        c.Compare("k in place = bf16 append's k", Down(c.Gpu, gk), Down(c.Gpu, bk), 0, "apb_rope_append_fp8");
        CompareCodes(c, "k rows", kAll, 5, t, Down(c.Gpu, bKd));
        CompareCodes(c, "v rows", vAll, 5, t, Down(c.Gpu, bVd));
    }

    /// <summary>Rows [at, at + t) of <paramref name="all"/> are the host codec's codes and scales of <paramref name="values"/>; the rest is untouched.</summary>
    static void CompareCodes(GpuCheck c, string what, Fp8Rows all, int at, int t, float[] values)
    {
        int cols = all.Codes.Cols, groups = cols / Fp8Rows.Group;
        var codes = new byte[all.Codes.Rows * cols];
        c.Gpu.DownloadBytes(all.Codes, codes);
        var scales = Down(c.Gpu, all.Scales);
        int wrongCodes = 0, wrongScales = 0, outside = 0;
        for (int r = 0; r < all.Codes.Rows; r++)
        {
            bool inside = r >= at && r < at + t;
            for (int g = 0; g < groups; g++)
            {
                float got = scales[r * groups + g];
                if (!inside) { outside += float.IsNaN(got) ? 0 : 1; continue; }
                var group = values.AsSpan((r - at) * cols + g * Fp8Rows.Group, Fp8Rows.Group);
                float s = Fp8E4M3.RowScale(group);
                if (BitConverter.SingleToInt32Bits(got) != BitConverter.SingleToInt32Bits(s)) wrongScales++;
                for (int i = 0; i < Fp8Rows.Group; i++)
                    if (codes[r * cols + g * Fp8Rows.Group + i] != Fp8E4M3.Encode(group[i] / s)) wrongCodes++;
            }
            if (!inside) outside += codes.AsSpan(r * cols, cols).IndexOfAnyExcept(NaNCode) >= 0 ? 1 : 0;
        }
        c.Record($"{what}: codes and scales = Fp8E4M3", wrongCodes + wrongScales + outside, 0, wrongCodes + wrongScales + outside == 0,
            $"{wrongCodes} codes and {wrongScales} scales differ of {t * cols} and {t * groups}; {outside} writes outside the rows", "apb_rope_append_fp8");
    }

    /// <summary>
    /// The fp8 decode against the CPU's fp32 attention over decode(code) x scale of random keys and values quantized on
    /// the host: the kernel is judged on the values the cache holds, not on what fp8 loses (that is the accuracy
    /// harness's question).
    /// </summary>
    static void Decode(GpuCheck c, int tq, int tk, int heads, int kv, int d, bool causal)
    {
        int cols = kv * d;
        var q = c.Rand((long)tq * heads * d, 1.5f); var k = c.Rand((long)tk * cols, 1.5f); var v = c.Rand((long)tk * cols);
        var (kCodes, kScales, kValues) = Quantize(k, cols);
        var (vCodes, vScales, vValues) = Quantize(v, cols);
        var r = AttentionReference.Of(c, q, kValues, vValues, tq, tk, heads, kv, d, causal);

        const int spare = 17;
        var gk = PoisonedFp8(c, tk + spare, cols); var gv = PoisonedFp8(c, tk + spare, cols);
        Put(c, gk.RowSlice(0, tk), kCodes, kScales); Put(c, gv.RowSlice(0, tk), vCodes, vScales);
        var gq = c.OnGpu(q, tq, heads * d);
        var go = c.Poisoned(tq, heads * d);
        var gl = c.Poisoned(tq, heads, CudaDType.F32);
        c.Gpu.DecodeAttentionFp8(gq, gk.RowSlice(0, tk), gv.RowSlice(0, tk), heads, kv, causal ? AttentionMask.Causal : AttentionMask.None, go, gl);
        c.Compare("out", Down(c.Gpu, go), r.RefO, r.OutLimit, "split-kv fp8");
        c.CompareLse("lse", Down(c.Gpu, gl), r.RefL, r.LseLimit, "split-kv fp8");
    }

    /// <summary>Host quantization of [rows, cols] values: codes, a scale per 32 values, and the values they stand for.</summary>
    static (byte[] Codes, float[] Scales, float[] Values) Quantize(float[] x, int cols)
    {
        var codes = new byte[x.Length];
        var scales = new float[x.Length / Fp8Rows.Group];
        var values = new float[x.Length];
        for (int g = 0; g < scales.Length; g++)
        {
            var group = x.AsSpan(g * Fp8Rows.Group, Fp8Rows.Group);
            float s = scales[g] = Fp8E4M3.RowScale(group);
            for (int i = 0; i < Fp8Rows.Group; i++)
            {
                int at = g * Fp8Rows.Group + i;
                codes[at] = Fp8E4M3.Encode(group[i] / s);
                values[at] = Fp8E4M3.Decode(codes[at]) * s;
            }
        }
        return (codes, scales, values);
    }

    static void Put(GpuCheck c, Fp8Rows dst, byte[] codes, float[] scales)
    {
        c.Gpu.UploadBytes(codes, dst.Codes);
        c.Gpu.Upload(scales, dst.Scales);
    }

    static Fp8Rows PoisonedFp8(GpuCheck c, int rows, int cols)
    {
        var r = c.Gpu.AllocateFp8(rows, cols);
        var nan = new byte[rows * cols];
        Array.Fill(nan, NaNCode);
        c.Gpu.UploadBytes(nan, r.Codes);
        var scales = new float[rows * (cols / Fp8Rows.Group)];
        Array.Fill(scales, float.NaN);
        c.Gpu.Upload(scales, r.Scales);
        return r;
    }
}
