using Apb.Backends.Cuda;
using static Apb.Gpu.Tests.GpuCheck;

namespace Apb.Gpu.Tests;

/// <summary>
/// The attention merges against the CPU: the pairwise MergeAttention (ring steps, the star phase's local part) and
/// MergeAttentionParts (the star phase's combination of every rank's part, fp32 throughout and rounded once).
/// Rows with lse = -inf (a part that saw no key) are in every case; in the parts cases some rows are empty in every part.
/// </summary>
public static class MergeCases
{
    public static IEnumerable<GpuCase> All()
    {
        foreach (var (T, heads, d) in new[] { (37, 8, 64), (5, 32, 128), (11, 6, 16) })
            yield return new("merge", $"merge_attention T={T} {heads}x{d}", c => Pairwise(c, T, heads, d));
        foreach (var (count, T, heads, d, lseF32) in new[] { (1, 19, 8, 64, true), (2, 64, 32, 128, true), (3, 33, 6, 16, true),
                     (8, 129, 32, 128, true), (4, 40, 8, 128, false) })
            yield return new("merge", $"merge_parts {count} parts x T={T} {heads}x{d}{(lseF32 ? "" : " lse bf16")}", c => Parts(c, count, T, heads, d, lseF32));
    }

    static void Pairwise(GpuCheck c, int T, int heads, int d)
    {
        var acc = c.Rand((long)T * heads * d); var part = c.Rand((long)T * heads * d);
        var la = c.Rand((long)T * heads, 3f); var lp = c.Rand((long)T * heads, 3f);
        // Rows that have seen nothing yet (-inf) on either side, and on both.
        for (int i = 0; i < T * heads; i += 7) la[i] = float.NegativeInfinity;
        for (int i = 3; i < T * heads; i += 11) lp[i] = float.NegativeInfinity;
        var ca = c.OnCpu(acc, T, heads * d); var cl = c.OnCpu(la, T, heads);
        c.Cpu.MergeAttention(ca, cl, c.OnCpu(part, T, heads * d), c.OnCpu(lp, T, heads), heads);
        var ga = c.OnGpu(acc, T, heads * d); var gl = c.OnGpu(la, T, heads, CudaDType.F32);
        c.Gpu.MergeAttention(ga, gl, c.OnGpu(part, T, heads * d), c.OnGpu(lp, T, heads, CudaDType.F32), heads);
        c.Compare("out", Down(c.Gpu, ga), Down(c.Cpu, ca), Bf16Tolerance);
        c.CompareLse("lse", Down(c.Gpu, gl), Down(c.Cpu, cl), 1e-5);
    }

    static void Parts(GpuCheck c, int count, int T, int heads, int d, bool lseF32)
    {
        var parts = c.Rand((long)count * T * heads * d);
        var lses = c.Rand((long)count * T * heads, 3f);
        // Part r leaves (row, head) pairs empty on its own stride; every part leaves the pairs of row 2 (and T - 1) empty.
        for (int r = 0; r < count; r++)
            for (int i = 0; i < T; i++)
                for (int h = 0; h < heads; h++)
                    if ((i * heads + h) % (5 + r) == r || i == 2 || i == T - 1)
                        lses[((long)r * T + i) * heads + h] = float.NegativeInfinity;
        var co = c.Cpu.Allocate(T, heads * d);
        c.Cpu.MergeAttentionParts(c.OnCpu(parts, count * T, heads * d), c.OnCpu(lses, count * T, heads), count, heads, co);
        var gp = c.OnGpu(parts, count * T, heads * d); var gl = c.OnGpu(lses, count * T, heads, lseF32 ? CudaDType.F32 : CudaDType.BF16);
        var go = c.Poisoned(T, heads * d);
        c.Gpu.MergeAttentionParts(gp, gl, count, heads, go);
        var got = Down(c.Gpu, go);
        c.Compare("out", got, Down(c.Cpu, co), Bf16Tolerance);

        double emptyMax = 0;
        foreach (int i in new[] { 2, T - 1 })
            for (int j = 0; j < heads * d; j++) emptyMax = Math.Max(emptyMax, float.IsNaN(got[i * heads * d + j]) ? double.PositiveInfinity : Math.Abs(got[i * heads * d + j]));
        c.Record("rows empty in every part are 0", emptyMax, 0, emptyMax == 0, "max |out| over them");

        // A fixed order of the sum: the same inputs give the same bits (every rank computes the same merge).
        var again = c.Poisoned(T, heads * d);
        c.Gpu.MergeAttentionParts(gp, gl, count, heads, again);
        c.Compare("same bits on a second call", Down(c.Gpu, again), got, 0);
    }
}
