using Apb.Backends;
using static Apb.Bench.Kernels.KernelBenchContext;

namespace Apb.Bench.Kernels;

/// <summary>
/// The CPU backend's attention kernel (Backends/Cpu/CpuAttention.cs: blocked, flash-style, vectorized), as
/// docs/kernels/cpu-attention.md measures it: 6 query / 2 KV heads, causal, Tq = Tk = T, d 64 and 128, values in [-1, 1].
/// Work counted in (query row, key, head) pairs, heads x T (T + 1) / 2, each 4 d FLOPs; stated per pair.
/// </summary>
public sealed class CpuAttentionHarness : KernelHarness
{
    const int Heads = 6, KvHeads = 2;

    public override string Name => "cpu-attention";
    public override string Summary => $"CPU backend attention, {Heads}/{KvHeads} heads, causal, Tq = Tk, d 64 and 128 (Stopwatch)";
    public override string SizeMeaning => "T: query rows = keys";
    public override int[] DefaultSizes => [4096, 16384];
    public override bool NeedsGpu => false;

    public override void Check(KernelBenchContext ctx)
    {
        const int t = 64, d = 64;
        var q = ctx.HostValues(t * Heads * d); var k = ctx.HostValues(t * KvHeads * d); var v = ctx.HostValues(t * KvHeads * d);
        var o = ctx.Cpu.Allocate(t, Heads * d);
        ctx.Cpu.Attention(ctx.OnCpu(q, t, Heads * d), ctx.OnCpu(k, t, KvHeads * d), ctx.OnCpu(v, t, KvHeads * d), Heads, KvHeads, AttentionMask.Causal, o, null);
        ctx.Expect($"causal T={t} h={Heads}/{KvHeads} d={d} against float64", Down(ctx.Cpu, o), Float64Attention(q, k, v, t, d), 1e-5);
    }

    /// <summary>Causal attention with Tq = Tk = t, in float64 one (row, head) at a time: the reference of the check.</summary>
    static float[] Float64Attention(float[] q, float[] k, float[] v, int t, int d)
    {
        var o = new float[t * Heads * d];
        double scale = 1 / Math.Sqrt(d);
        var p = new double[t];
        for (int i = 0; i < t; i++)
            for (int h = 0; h < Heads; h++)
            {
                int kh = h / (Heads / KvHeads);
                double max = double.NegativeInfinity, sum = 0;
                for (int j = 0; j <= i; j++)
                {
                    double s = 0;
                    for (int c = 0; c < d; c++) s += (double)q[(i * Heads + h) * d + c] * k[(j * KvHeads + kh) * d + c];
                    p[j] = s * scale;
                    max = Math.Max(max, p[j]);
                }
                for (int j = 0; j <= i; j++) sum += p[j] = Math.Exp(p[j] - max);
                for (int c = 0; c < d; c++)
                {
                    double acc = 0;
                    for (int j = 0; j <= i; j++) acc += p[j] * v[(j * KvHeads + kh) * d + c];
                    o[(i * Heads + h) * d + c] = (float)(acc / sum);
                }
            }
        return o;
    }

    public override IEnumerable<KernelRow> Time(KernelBenchContext ctx, int t)
    {
        foreach (int d in new[] { 64, 128 })
        {
            var q = ctx.OnCpu(ctx.HostValues((long)t * Heads * d), t, Heads * d);
            var k = ctx.OnCpu(ctx.HostValues((long)t * KvHeads * d), t, KvHeads * d);
            var v = ctx.OnCpu(ctx.HostValues((long)t * KvHeads * d), t, KvHeads * d);
            var o = ctx.Cpu.Allocate(t, Heads * d); var lse = ctx.Cpu.Allocate(t, Heads);
            var time = ctx.TimeCpu(() => ctx.Cpu.Attention(q, k, v, Heads, KvHeads, AttentionMask.Causal, o, lse), 3);
            double pairs = (double)Heads * t * (t + 1) / 2;
            yield return new KernelRow(Name, $"d {d}", $"T={t} h={Heads}/{KvHeads} d={d} causal", t, time,
                new Work(Bound.CpuPairs, pairs, $"{Heads} heads x {t} x {t + 1} / 2", 4.0 * d * pairs));
        }
    }
}
