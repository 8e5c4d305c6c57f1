using Apb.Backends.Cuda;
using static Apb.Bench.Kernels.KernelBenchContext;

namespace Apb.Bench.Kernels;

/// <summary>
/// The attention merges (Kernels/elementwise.cu) at the Llama-3.1-8B shape (32 heads, d 128, fp32 log-sum-exps):
/// pairwise (merge_attention: acc := acc (+) part, a ring step) and parts (merge_parts: 8 ranks' parts combined at once,
/// APB's star phase). Memory-bound: bytes are every input read and the output written once.
/// </summary>
public sealed class MergeHarness : KernelHarness
{
    const int Heads = 32, D = 128, Parts = 8;

    public override string Name => "merge";
    public override string Summary => $"merge_attention (pairwise) and merge_parts ({Parts} parts), {Heads} heads x d {D}";
    public override string SizeMeaning => "T: rows merged";
    public override int[] DefaultSizes => [16384, 65536];

    public override void Check(KernelBenchContext ctx)
    {
        const int t = 64;
        long n = (long)t * Heads * D;
        var acc = ctx.HostValues(n); var part = ctx.HostValues(n);
        var la = ctx.HostValues((long)t * Heads, 3f); var lp = ctx.HostValues((long)t * Heads, 3f);
        var ca = ctx.OnCpu(acc, t, Heads * D); var cl = ctx.OnCpu(la, t, Heads);
        ctx.Cpu.MergeAttention(ca, cl, ctx.OnCpu(part, t, Heads * D), ctx.OnCpu(lp, t, Heads), Heads);
        using var ga = ctx.OnGpu(acc, t, Heads * D); using var gl = ctx.OnGpu(la, t, Heads, CudaDType.F32);
        using var gp = ctx.OnGpu(part, t, Heads * D); using var glp = ctx.OnGpu(lp, t, Heads, CudaDType.F32);
        ctx.Gpu.MergeAttention(ga, gl, gp, glp, Heads);
        ctx.Expect($"merge_attention T={t}", Down(ctx.Gpu, ga), Down(ctx.Cpu, ca), 1e-2);

        var parts = ctx.HostValues(Parts * n); var lses = ctx.HostValues((long)Parts * t * Heads, 3f);
        var co = ctx.Cpu.Allocate(t, Heads * D);
        ctx.Cpu.MergeAttentionParts(ctx.OnCpu(parts, Parts * t, Heads * D), ctx.OnCpu(lses, Parts * t, Heads), Parts, Heads, co);
        using var gparts = ctx.OnGpu(parts, Parts * t, Heads * D); using var glses = ctx.OnGpu(lses, Parts * t, Heads, CudaDType.F32);
        using var go = ctx.Gpu.Allocate(t, Heads * D, CudaDType.BF16);
        ctx.Gpu.MergeAttentionParts(gparts, glses, Parts, Heads, go);
        ctx.Expect($"merge_parts {Parts} x T={t}", Down(ctx.Gpu, go), Down(ctx.Cpu, co), 1e-2);
    }

    public override IEnumerable<KernelRow> Time(KernelBenchContext ctx, int t)
    {
        var gpu = ctx.Gpu;
        double rows = (double)t * Heads * D * 2, lse = (double)t * Heads * 4;
        using (var acc = ctx.DeviceRandom(t, Heads * D)) using (var part = ctx.DeviceRandom(t, Heads * D))
        using (var la = gpu.AllocateF32(t, Heads)) using (var lp = gpu.AllocateF32(t, Heads))
        {
            // Zero log-sum-exps (equal weights): the merge's arithmetic does not depend on the values.
            gpu.Upload(new float[t * Heads], la); gpu.Upload(new float[t * Heads], lp);
            yield return new KernelRow("merge_attention", "pairwise", $"T={t} {Heads}x{D}", t,
                ctx.TimeGpu(() => gpu.MergeAttention(acc, la, part, lp, Heads), 20),
                new Work(Bound.Memory, 3 * rows + 3 * lse, $"read acc, part + write acc: 3 x {t} x {Heads} x {D} x 2 B + 3 lse x {t} x {Heads} x 4 B"));
        }
        using (var parts = ctx.DeviceRandom(Parts * t, Heads * D)) using (var lses = gpu.AllocateF32(Parts * t, Heads))
        using (var o = gpu.Allocate(t, Heads * D, CudaDType.BF16))
        {
            gpu.Upload(new float[Parts * t * Heads], lses);
            yield return new KernelRow("merge_parts", $"{Parts} parts", $"{Parts} x T={t} {Heads}x{D}", t,
                ctx.TimeGpu(() => gpu.MergeAttentionParts(parts, lses, Parts, Heads, o), 20),
                new Work(Bound.Memory, (Parts + 1) * rows + Parts * lse, $"read {Parts} parts + write out: {Parts + 1} x {t} x {Heads} x {D} x 2 B + {Parts} lse x {t} x {Heads} x 4 B"));
        }
    }
}
