using Apb.Backends;
using static Apb.Bench.Kernels.KernelBenchContext;

namespace Apb.Bench.Kernels;

/// <summary>
/// The CPU backend's products (Backends/Cpu/CpuMatMul.cs, through <c>Linear</c>) in the embedded model's shapes, as
/// docs/kernels/cpu-matmul.md measures them: x[T, K] W[N, K]^T with bf16 weights, 2 T K N FLOPs.
/// </summary>
public sealed class CpuMatMulHarness : KernelHarness
{
    /// <summary>(name, K, N) per token and layer of models/embedded: hidden 384, intermediate 1024, 6 + 2 + 2 heads of 64.</summary>
    static readonly (string Name, int K, int N)[] Shapes = [("qkv", 384, 640), ("gate/up", 384, 1024), ("down", 1024, 384)];

    public override string Name => "cpu-matmul";
    public override string Summary => "CPU backend products x W^T in the embedded model's shapes (q/k/v 384->640, gate/up 384->1024, down 1024->384), bf16 weights (Stopwatch)";
    public override string SizeMeaning => "T: tokens (rows of x)";
    public override int[] DefaultSizes => [1, 64, 4096];
    public override bool NeedsGpu => false;

    public override void Check(KernelBenchContext ctx)
    {
        // Both forms: a decode-sized call (dot products) and a packed one with partial tiles.
        foreach (int t in new[] { 3, 13 })
        {
            const int k = 96, n = 200;
            var x = ctx.HostValues(t * k); var w = ctx.HostValues(n * k);
            var o = ctx.Cpu.Allocate(t, n);
            ctx.Cpu.Linear(ctx.OnCpu(x, t, k), ctx.CpuWeight("w", w, n, k), null, o);
            var want = new float[t * n];
            for (int i = 0; i < t; i++)
                for (int j = 0; j < n; j++)
                {
                    double s = 0;
                    for (int c = 0; c < k; c++) s += (double)x[i * k + c] * w[j * k + c];
                    want[i * n + j] = (float)s;
                }
            ctx.Expect($"T={t} K={k} N={n} against float64", Down(ctx.Cpu, o), want, 1e-5);
        }
    }

    public override IEnumerable<KernelRow> Time(KernelBenchContext ctx, int t)
    {
        foreach (var (name, k, n) in Shapes)
        {
            var x = ctx.OnCpu(ctx.HostValues((long)t * k), t, k);
            var w = ctx.CpuWeight(name, ctx.HostValues((long)n * k), n, k);
            var o = ctx.Cpu.Allocate(t, n);
            // Short calls are timed over more repeats: a decode-sized product takes well under a millisecond.
            var time = ctx.TimeCpu(() => ctx.Cpu.Linear(x, w, null, o), t < 1024 ? 51 : 5);
            yield return new KernelRow(Name, name, $"T={t} K={k} N={n} bf16", t, time,
                new Work(Bound.CpuFlops, 2.0 * t * k * n, $"2 x {t} x {k} x {n}"));
        }
    }
}
