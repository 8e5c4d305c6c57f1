using Apb.Backends;
using Apb.Backends.Cuda;
using static Apb.Gpu.Tests.GpuCheck;

namespace Apb.Gpu.Tests;

/// <summary>
/// The split-KV decode kernel (Kernels/decode.cu) over Tq = 1..16 query rows, GQA groups 1, 4 and 8, head dims 64 and 128,
/// causal (bottom-right: with Tq &gt; Tk the first rows see nothing) and full, caches from 1 key to 64K keys. K and V are
/// row slices of a larger NaN-poisoned buffer, as a KV cache hands them over: a read past the last key shows up as NaN.
/// Same tolerance rule as the prefill kernels.
/// </summary>
public static class DecodeCases
{
    public static IEnumerable<GpuCase> All()
    {
        foreach (int tq in new[] { 1, 3, 8, 16 })
            foreach (int tk in new[] { 1, 65, 1000, 4097 })
                foreach (var (heads, kv) in new[] { (8, 8), (32, 8), (16, 2) })
                    foreach (int d in new[] { 64, 128 })
                        foreach (bool causal in new[] { true, false })
                            yield return Case(tq, tk, heads, kv, d, causal, lseF32: true);
        // One key tile exactly with a bf16 LSE, and the long caches (model shape; GQA 8 with two row groups at Tq = 16).
        yield return Case(2, 64, 32, 8, 128, causal: true, lseF32: false);
        yield return Case(1, 65536, 32, 8, 128, causal: true, lseF32: true);
        yield return Case(8, 65536, 32, 8, 128, causal: true, lseF32: true);
        yield return Case(16, 20000, 16, 2, 64, causal: true, lseF32: true);
        yield return Case(5, 65536, 16, 2, 64, causal: false, lseF32: true);
    }

    static GpuCase Case(int tq, int tk, int heads, int kv, int d, bool causal, bool lseF32) =>
        new("decode", $"Tq={tq} Tk={tk} h={heads}/{kv} d={d} {(causal ? "causal" : "full")}{(lseF32 ? "" : " lse bf16")}",
            c => Check(c, tq, tk, heads, kv, d, causal, lseF32));

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
