using Apb.Backends;
using Apb.Backends.Cuda;
using static Apb.Gpu.Tests.GpuCheck;

namespace Apb.Gpu.Tests;

/// <summary>
/// The split-KV decode kernels (Kernels/decode.cu, versions 1 and 2; decode_mma.cu, version 3) over Tq = 1..16 query rows, GQA groups 1, 4 and 8, head dims 64 and 128,
/// causal (bottom-right: with Tq &gt; Tk the first rows see nothing) and full, caches from 1 key to 64K keys. K and V are
/// row slices of a larger NaN-poisoned buffer, as a KV cache hands them over: a read past the last key shows up as NaN.
/// Same tolerance rule as the prefill kernels.
/// </summary>
public static class DecodeCases
{
    public static IEnumerable<GpuCase> All()
    {
        // Version 2 (it takes calls of at most 8 pairs per KV head, version 1 the rest), version 1 forced and version 3
        // (decode_mma.cu, tensor cores: at most 16 pairs), over the whole grid; version 2 with prefetch (the default for
        // one sequence) over the rows it takes.
        foreach (var version in new[] { DecodeKernelVersion.V2, DecodeKernelVersion.V1, DecodeKernelVersion.V2Prefetch, DecodeKernelVersion.V3 })
        {
            foreach (int tq in new[] { 1, 3, 8, 16 })
                foreach (int tk in new[] { 1, 65, 1000, 4097 })
                    foreach (var (heads, kv) in new[] { (8, 8), (32, 8), (16, 2) })
                        foreach (int d in new[] { 64, 128 })
                            foreach (bool causal in new[] { true, false })
                                if (version != DecodeKernelVersion.V2Prefetch || tq * heads / kv <= 8)
                                    yield return Case(version, tq, tk, heads, kv, d, causal, lseF32: true);
            // One key tile exactly with a bf16 LSE, and the long caches (model shape; GQA 8 with two row groups at Tq = 16).
            yield return Case(version, 2, 64, 32, 8, 128, causal: true, lseF32: false);
            yield return Case(version, 1, 65536, 32, 8, 128, causal: true, lseF32: true);
            yield return Case(version, 2, 65536, 32, 8, 128, causal: true, lseF32: true);
            yield return Case(version, 8, 65536, 32, 8, 128, causal: true, lseF32: true);
            yield return Case(version, 16, 20000, 16, 2, 64, causal: true, lseF32: true);
            yield return Case(version, 5, 65536, 16, 2, 64, causal: false, lseF32: true);
            yield return Case(version, 1, 3000, 6, 2, 64, causal: true, lseF32: true); // the embedded model's group of 3
            // A batched decode step (IBackend.DecodeAttention): sequences of very different lengths in one launch.
            foreach (var (lengths, heads, kv, d) in new[] { (new[] { 1, 70, 4097, 300 }, 32, 8, 128), (new[] { 9000, 1, 64 }, 16, 2, 64),
                         (Enumerable.Range(0, 16).Select(i => 500 + 977 * i).ToArray(), 32, 8, 128), (new[] { 33, 2000 }, 64, 8, 128) })
                yield return new GpuCase("decode", $"{Name(version)} batch of {lengths.Length}: Tk {string.Join('/', lengths.Take(4))}{(lengths.Length > 4 ? "/..." : "")} h={heads}/{kv} d={d}",
                    c => c.WithDecodeKernel(version, () => CheckBatch(c, lengths, heads, kv, d)));
        }
        // The batch's KV appends (IBackend.ScatterRows): one launch, each row to its own cache's next row; kv_dim 1024
        // (the fast path) and 24 (rows of 48 bytes: the copy-per-row fallback), bf16 and fp32.
        foreach (var (rows, cols, dtype) in new[] { (16, 1024, CudaDType.BF16), (5, 24, CudaDType.BF16), (3, 256, CudaDType.F32) })
            yield return new GpuCase("decode", $"scatter rows: {rows} x {cols} {dtype}", c => CheckScatter(c, rows, cols, dtype));
    }

    /// <summary>Row i lands in destination i and nowhere else: destinations are rows of NaN-poisoned buffers.</summary>
    static void CheckScatter(GpuCheck c, int rows, int cols, CudaDType dtype)
    {
        var src = c.OnGpu(c.Rand((long)rows * cols), rows, cols, dtype);
        var want = Down(c.Gpu, src);
        var buffers = Enumerable.Range(0, rows).Select(i => c.Poisoned(3 + i, cols, dtype)).ToArray();
        var targets = buffers.Select((t, i) => (Tensor)t.RowSlice(1 + i, 1)).ToArray();
        c.Gpu.ScatterRows(src, targets);
        for (int i = 0; i < rows; i++)
        {
            var all = Down(c.Gpu, buffers[i]);
            c.Compare($"row {i}", all.AsSpan((1 + i) * cols, cols).ToArray(), want.AsSpan(i * cols, cols).ToArray(), 0, "scatter");
            if (!all.AsSpan(0, (1 + i) * cols).ToArray().All(float.IsNaN) || !all.AsSpan((2 + i) * cols).ToArray().All(float.IsNaN))
                throw new InvalidOperationException($"scatter: row {i} wrote outside its destination row");
        }
    }

    /// <summary>
    /// Each sequence's row against its own cache (every key visible), all in one call, against the CPU reference of each
    /// alone; caches are slices of NaN-poisoned buffers, so a read past a sequence's last key shows up.
    /// </summary>
    static void CheckBatch(GpuCheck c, int[] lengths, int heads, int kv, int d)
    {
        int b = lengths.Length;
        var refs = lengths.Select(tk => AttentionReference.Make(c, 1, tk, heads, kv, d, causal: false)).ToArray();
        var keys = new Tensor[b]; var values = new Tensor[b];
        for (int i = 0; i < b; i++)
        {
            var gk = c.Poisoned(lengths[i] + 9, kv * d); var gv = c.Poisoned(lengths[i] + 9, kv * d);
            c.Gpu.Upload(refs[i].K, gk.RowSlice(0, lengths[i])); c.Gpu.Upload(refs[i].V, gv.RowSlice(0, lengths[i]));
            keys[i] = gk.RowSlice(0, lengths[i]); values[i] = gv.RowSlice(0, lengths[i]);
        }
        var gq = c.OnGpu(refs.SelectMany(r => r.Q).ToArray(), b, heads * d);
        var go = c.Poisoned(b, heads * d);
        c.Gpu.DecodeAttention(gq, keys, values, heads, kv, go);
        var got = Down(c.Gpu, go);
        for (int i = 0; i < b; i++)
            c.Compare($"sequence {i} (Tk {lengths[i]})", got.AsSpan(i * heads * d, heads * d).ToArray(), refs[i].RefO, refs[i].OutLimit, "split-kv batch");
    }

    internal static string Name(DecodeKernelVersion v) => v switch
    {
        DecodeKernelVersion.V1 => "v1", DecodeKernelVersion.V2Prefetch => "v2pf", DecodeKernelVersion.V3 => "v3", _ => "v2",
    };

    static GpuCase Case(DecodeKernelVersion version, int tq, int tk, int heads, int kv, int d, bool causal, bool lseF32) =>
        new("decode", $"{Name(version)} Tq={tq} Tk={tk} h={heads}/{kv} d={d} {(causal ? "causal" : "full")}{(lseF32 ? "" : " lse bf16")}",
            c => c.WithDecodeKernel(version, () => Check(c, tq, tk, heads, kv, d, causal, lseF32)));

    static void Check(GpuCheck c, int tq, int tk, int heads, int kv, int d, bool causal, bool lseF32)
    {
        var mask = causal ? AttentionMask.Causal : AttentionMask.None;
        var r = AttentionReference.Make(c, tq, tk, heads, kv, d, causal);
        const int spare = 17;
        var gk = c.Poisoned(tk + spare, kv * d); var gv = c.Poisoned(tk + spare, kv * d);
        c.Gpu.Upload(r.K, gk.RowSlice(0, tk)); c.Gpu.Upload(r.V, gv.RowSlice(0, tk));
        var gq = c.OnGpu(r.Q, tq, heads * d);
        var go = c.Poisoned(tq, heads * d);
        var gl = c.Poisoned(tq, heads, lseF32 ? CudaDType.F32 : CudaDType.BF16);
        c.WithKernel(AttentionKernel.SplitKv, () => c.Gpu.Attention(gq, gk.RowSlice(0, tk), gv.RowSlice(0, tk), heads, kv, mask, go, gl));
        c.Compare("out", Down(c.Gpu, go), r.RefO, r.OutLimit, "split-kv");
        // A bf16 LSE is rounded to 8 bits of mantissa: |lse| ~ 10 gives steps of 0.06.
        c.CompareLse("lse", Down(c.Gpu, gl), r.RefL, lseF32 ? r.LseLimit : 0.1, "split-kv");
    }
}
