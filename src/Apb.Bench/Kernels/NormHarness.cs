using Apb.Backends.Cuda;
using static Apb.Bench.Kernels.KernelBenchContext;

namespace Apb.Bench.Kernels;

/// <summary>
/// RMSNorm and the fused residual add + RMSNorm (Kernels/elementwise.cu) over rows of the Llama-3.1-8B hidden size:
/// memory-bound, so bytes moved against HBM. rms_norm reads x and writes the output; add_rms_norm reads x and y and
/// writes the sum and the output. The [hidden] weight is read once per block and not counted.
/// </summary>
public sealed class NormHarness : KernelHarness
{
    const int Hidden = 4096;
    const float Eps = 1e-5f;

    public override string Name => "rms-norm";
    public override string Summary => $"rms_norm and add_rms_norm over [rows, {Hidden}] bf16";
    public override string SizeMeaning => "rows (tokens)";
    public override int[] DefaultSizes => [16384, 131072];

    public override void Check(KernelBenchContext ctx)
    {
        const int rows = 64;
        var x = ctx.HostValues((long)rows * Hidden, 3f); var y = ctx.HostValues((long)rows * Hidden);
        var (cw, gw) = ctx.Weight("norm", ctx.HostValues(Hidden), 1, Hidden);
        var co = ctx.Cpu.Allocate(rows, Hidden); ctx.Cpu.RmsNorm(ctx.OnCpu(x, rows, Hidden), cw, Eps, co);
        using var gx = ctx.OnGpu(x, rows, Hidden); using var go = ctx.Gpu.Allocate(rows, Hidden, CudaDType.BF16);
        ctx.Gpu.RmsNorm(gx, gw, Eps, go);
        ctx.Expect($"rms_norm [{rows}, {Hidden}]", Down(ctx.Gpu, go), Down(ctx.Cpu, co), 1e-2);

        var cx = ctx.OnCpu(x, rows, Hidden); ctx.Cpu.AddRmsNorm(cx, ctx.OnCpu(y, rows, Hidden), cw, Eps, co);
        using var gy = ctx.OnGpu(y, rows, Hidden);
        ctx.Gpu.AddRmsNorm(gx, gy, gw, Eps, go);
        ctx.Expect($"add_rms_norm (residual) [{rows}, {Hidden}]", Down(ctx.Gpu, gx), Down(ctx.Cpu, cx), 1e-2);
        ctx.Expect($"add_rms_norm (normed) [{rows}, {Hidden}]", Down(ctx.Gpu, go), Down(ctx.Cpu, co), 1e-2);
    }

    public override IEnumerable<KernelRow> Time(KernelBenchContext ctx, int rows)
    {
        var gpu = ctx.Gpu;
        var w = gpu.LoadRandom("norm", 1, Hidden, Apb.Backends.RandomValues.Key(7, 9), 0.1f, 1f);
        using var x = ctx.DeviceRandom(rows, Hidden); using var y = ctx.DeviceRandom(rows, Hidden, 0.01f);
        using var o = gpu.Allocate(rows, Hidden, CudaDType.BF16);
        double tensor = (double)rows * Hidden * 2;
        string shape = $"[{rows}, {Hidden}] bf16";
        yield return new KernelRow("rms_norm", "cuda", shape, rows, ctx.TimeGpu(() => gpu.RmsNorm(x, w, Eps, o), 20),
            new Work(Bound.Memory, 2 * tensor, $"read x + write out: 2 x {rows} x {Hidden} x 2 B"));
        // The residual grows by y on every call (small values: it stays finite over the repeats).
        yield return new KernelRow("add_rms_norm", "cuda", shape, rows, ctx.TimeGpu(() => gpu.AddRmsNorm(x, y, w, Eps, o), 20),
            new Work(Bound.Memory, 4 * tensor, $"read x, y + write x, out: 4 x {rows} x {Hidden} x 2 B"));
    }
}
