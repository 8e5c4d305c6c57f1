using Apb.Backends;
using Apb.Backends.Cuda;
using static Apb.Bench.Kernels.KernelBenchContext;

namespace Apb.Bench.Kernels;

/// <summary>
/// Our cuBLASLt bf16 GEMM path (CudaBackend.Linear: x W^T, fp32 accumulation) on square problems: the ceiling every
/// other compute-bound number here and `apb bench prefill --peak-tflops` is held against.
/// </summary>
public sealed class GemmHarness : KernelHarness
{
    public override string Name => "gemm";
    public override string Summary => "cuBLASLt bf16 GEMM through CudaBackend.Linear, M = N = K";
    public override string SizeMeaning => "M = N = K";
    public override int[] DefaultSizes => [8192];

    public override void Check(KernelBenchContext ctx)
    {
        foreach (var (m, n, k) in new[] { (256, 256, 256), (7, 512, 1024) })
        {
            var x = ctx.HostValues((long)m * k);
            var (cw, gw) = ctx.Weight("w", ctx.HostValues((long)n * k, 1f / MathF.Sqrt(k)), n, k);
            var co = ctx.Cpu.Allocate(m, n); ctx.Cpu.Linear(ctx.OnCpu(x, m, k), cw, null, co);
            using var gx = ctx.OnGpu(x, m, k); using var go = ctx.Gpu.Allocate(m, n, CudaDType.BF16);
            ctx.Gpu.Linear(gx, gw, null, go);
            ctx.Expect($"linear M={m} N={n} K={k}", Down(ctx.Gpu, go), Down(ctx.Cpu, co), 1e-2);
        }
    }

    public override IEnumerable<KernelRow> Time(KernelBenchContext ctx, int n)
    {
        var gpu = ctx.Gpu;
        using var x = ctx.DeviceRandom(n, n); using var y = gpu.Allocate(n, n, CudaDType.BF16);
        var w = gpu.LoadRandom("gemm", n, n, RandomValues.Key(7, 5), 0.01f, 0f);
        var time = ctx.TimeGpu(() => gpu.Linear(x, w, null, y), 10);
        yield return new KernelRow(Name, "cuBLASLt", $"M=N=K={n} bf16", n, time, new Work(Bound.Compute, 2.0 * n * n * (double)n, $"2 x {n}^3"));
    }
}
