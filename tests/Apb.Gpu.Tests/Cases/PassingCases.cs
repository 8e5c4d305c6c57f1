using Apb.Backends;
using Apb.Backends.Cuda;
using static Apb.Gpu.Tests.GpuCheck;

namespace Apb.Gpu.Tests;

/// <summary>
/// APB's passing ops on the GPU (IBackend.Passing: group_mean, head_dot, combine_standardized, select_passing,
/// gather_head_rows) against CpuPassingOps, the reference; and the chain as ApbAttention runs it, with the selected rows
/// kept on the device.
/// </summary>
public static class PassingCases
{
    public static IEnumerable<GpuCase> All()
    {
        // d = 1 is the shape NoveltyTerm widens the retaining heads' bf16 scores to fp32 with (a vector of ones there).
        foreach (var (rows, heads, d, vecF32) in new[] { (37, 4, 64, false), (1000, 8, 128, false), (4099, 8, 128, true), (9, 3, 16, true), (1000, 8, 1, true) })
            yield return new("passing", $"head_dot [{rows}, {heads}x{d}] vec {(vecF32 ? "f32" : "bf16")}", c => HeadDot(c, rows, heads, d, vecF32));
        foreach (var (rows, heads, groups, d, outF32) in new[] { (64, 32, 8, 128, true), (1, 4, 4, 64, true), (7, 6, 2, 16, false), (333, 32, 8, 128, false),
                     (16384, 8, 8, 128, true), (1000, 8, 8, 128, false), (70001, 2, 2, 64, true) })
            yield return new("passing", $"group_mean {rows} rows, {heads} heads in {groups} groups x d={d} {(outF32 ? "f32" : "bf16")}",
                c => GroupMean(c, rows, heads, groups, d, outF32));
        foreach (var (rows, heads, alias) in new[] { (16384, 8, true), (1000, 2, false), (37, 3, true), (1, 4, false) })
            yield return new("passing", $"combine_standardized [{rows}, {heads}]{(alias ? " in place" : "")}", c => Combine(c, rows, heads, alias));
        foreach (var dt in new[] { CudaDType.BF16, CudaDType.F32 })
            foreach (var (srcRows, picked, heads, d) in new[] { (60, 17, 8, 64), (4096, 1024, 8, 128), (9, 9, 3, 16) })
                yield return new("passing", $"gather_head_rows {picked} of [{srcRows}, {heads}x{d}] {dt}", c => Gather(c, srcRows, picked, heads, d, dt));
        foreach (var (rows, heads, count, coarse, f32) in new[] { (1000, 8, 100, false, true), (65536, 8, 2048, false, true),
                     (65536, 8, 1024, true, false), (300, 3, 300, false, true), (50, 2, 1, true, true), (7, 8, 5, true, false) })
            yield return new("passing", $"select_passing {count} of {rows} rows x {heads} heads{(coarse ? " (coarse: ties)" : "")} {(f32 ? "f32" : "bf16")}",
                c => Select(c, rows, heads, count, coarse, f32));
        // Best first (a passing budget's senders): the ranking kernel after the selection; 8192 spans 32 blocks a head.
        foreach (var (rows, heads, count, coarse) in new[] { (65536, 8, 512, false), (65536, 8, 8192, true), (300, 3, 300, true), (50, 2, 1, false), (1000, 8, 257, true) })
            yield return new("passing", $"select_passing best first {count} of {rows} rows x {heads} heads{(coarse ? " (coarse: ties)" : "")}",
                c => Select(c, rows, heads, count, coarse, f32: true, bestFirst: true));
        // APB's shape: a 128K context over 8 ranks is 16K-row blocks, l_p 2048 (the paper's; ApbDefaults passes 1024), 8 KV heads (Llama-3.1-8B), 64 query rows.
        foreach (var (block, passing, qRows, heads, kv, d) in new[] { (16384, 2048, 64, 32, 8, 128), (1000, 100, 16, 8, 2, 64) })
            yield return new("passing", $"device chain: score, select {passing} of {block} rows, gather K/V ({heads}/{kv} heads, d={d})",
                c => DeviceChain(c, block, passing, qRows, heads, kv, d));
    }

    static IPassingOps Ref(GpuCheck c) => c.Cpu.Passing;

    /// <summary>fp32 scores of bf16 keys against qbar (bf16 as the strategy may keep it, or fp32), on a row slice.</summary>
    static void HeadDot(GpuCheck c, int rows, int heads, int d, bool vecF32)
    {
        var x = c.Rand((long)(rows + 3) * heads * d); var vec = c.Rand((long)heads * d);
        var co = c.Cpu.Allocate(rows, heads);
        Ref(c).HeadDot(c.OnCpu(x, rows + 3, heads * d).RowSlice(3, rows), c.OnCpu(vec, 1, heads * d), heads, co);
        var go = c.Poisoned(rows, heads, CudaDType.F32);
        c.Gpu.Passing.HeadDot(c.OnGpu(x, rows + 3, heads * d).RowSlice(3, rows), c.OnGpu(vec, 1, heads * d, vecF32 ? CudaDType.F32 : CudaDType.BF16), heads, go);
        c.Compare("head_dot", Down(c.Gpu, go), Down(c.Cpu, co), 1e-5);
    }

    /// <summary>APB's qbar: query rows from the middle of a tensor, group sizes 1, 3 and 4, fp32 and bf16 out.</summary>
    static void GroupMean(GpuCheck c, int rows, int heads, int groups, int d, bool outF32)
    {
        var x = c.Rand((long)(rows + 5) * heads * d);
        var co = c.Cpu.Allocate(1, groups * d);
        Ref(c).GroupMean(c.OnCpu(x, rows + 5, heads * d).RowSlice(2, rows), heads, groups, co);
        var go = c.Poisoned(1, groups * d, outF32 ? CudaDType.F32 : CudaDType.BF16);
        c.Gpu.Passing.GroupMean(c.OnGpu(x, rows + 5, heads * d).RowSlice(2, rows), heads, groups, go);
        c.Compare("group_mean", Down(c.Gpu, go), Down(c.Cpu, co), outF32 ? 1e-5 : Bf16Tolerance);
    }

    /// <summary>
    /// Two fp32 score columns per head mixed by their standardized values (the novelty mix of the query-aware scorer),
    /// into a third tensor or in place over the first; one constant column (z = 0) and, with one row, every column constant.
    /// The sums' order differs between the backends, so the match is to fp32 rounding, not exact.
    /// </summary>
    static void Combine(GpuCheck c, int rows, int heads, bool alias)
    {
        var a = c.Rand((long)rows * heads, 4f); var b = c.Rand((long)rows * heads);
        for (int t = 0; t < rows; t++) a[t * heads + heads - 1] = 2.5f;
        var ca = c.OnCpu(a, rows, heads); var co = alias ? ca : c.Cpu.Allocate(rows, heads);
        Ref(c).CombineStandardized(ca, 1f, c.OnCpu(b, rows, heads), -0.75f, co);
        var ga = c.OnGpu(a, rows, heads, CudaDType.F32); var go = alias ? ga : c.Poisoned(rows, heads, CudaDType.F32);
        c.Gpu.Passing.CombineStandardized(ga, 1f, c.OnGpu(b, rows, heads, CudaDType.F32), -0.75f, go);
        c.Compare("combine_standardized", Down(c.Gpu, go), Down(c.Cpu, co), 1e-5);
    }

    /// <summary>Rows picked separately per head; exact in both element types.</summary>
    static void Gather(GpuCheck c, int srcRows, int picked, int heads, int d, CudaDType dt)
    {
        var src = c.Rand((long)srcRows * heads * d);
        var idx = Enumerable.Range(0, picked * heads).Select(_ => c.Rng.Next(srcRows)).ToArray();
        using var ci = Ref(c).AllocateRows(picked, heads); Ref(c).Upload(idx, ci);
        using var gi = c.Gpu.Passing.AllocateRows(picked, heads); c.Gpu.Passing.Upload(idx, gi);
        var cg = c.Cpu.Allocate(picked, heads * d); Ref(c).GatherHeadRows(c.OnCpu(src, srcRows, heads * d), heads, ci, cg);
        var gg = c.Poisoned(picked, heads * d, dt); c.Gpu.Passing.GatherHeadRows(c.OnGpu(src, srcRows, heads * d, dt), heads, gi, gg);
        c.Compare("gather_head_rows", Down(c.Gpu, gg), Down(c.Cpu, cg), 0);
    }

    /// <summary>
    /// The same scores on both sides, so the picked rows must match exactly, ties included (the max-pool makes runs of
    /// equal values; "coarse" scores add many more). The GPU's index slots are set to -1 before every selection.
    /// </summary>
    static void Select(GpuCheck c, int rows, int heads, int count, bool coarse, bool f32, bool bestFirst = false)
    {
        var sc = c.Rand((long)rows * heads, 3f);
        if (coarse) for (int i = 0; i < sc.Length; i++) sc[i] = MathF.Round(sc[i] * 2) / 2;
        using var ci = Ref(c).AllocateRows(count, heads); using var gi = c.Gpu.Passing.AllocateRows(count, heads);
        Ref(c).SelectPassing(c.OnCpu(sc, rows, heads), heads, ci, bestFirst);
        c.Gpu.Passing.SelectPassing(c.OnGpu(sc, rows, heads, f32 ? CudaDType.F32 : CudaDType.BF16), heads, gi, bestFirst);
        c.Compare("picked rows", Rows(c.Gpu.Passing, gi), Rows(Ref(c), ci), 0);
    }

    static float[] Rows(IPassingOps ops, PassingRows rows)
    {
        var ids = new int[rows.Count * rows.Heads];
        ops.Download(rows, ids);
        return ids.Select(i => (float)i).ToArray();
    }

    /// <summary>
    /// qbar of the query rows, scores of one block's keys, the top-l_p rows per KV head, and the gather of those rows of
    /// K and V, as ApbAttention chains them: on the GPU the selected indices go from select_passing to the gathers
    /// without a download. Small integers make every sum exact in fp32 whatever its order (and the group of
    /// qRows x heads/kv values a power of two, so the mean is exact too), so both backends see identical scores and
    /// must pick identical rows (ties included: integer scores tie often); the gathered rows then match exactly.
    /// </summary>
    static void DeviceChain(GpuCheck c, int block, int passing, int qRows, int heads, int kv, int d)
    {
        float[] Ints(long n) { var a = new float[n]; for (long i = 0; i < n; i++) a[i] = c.Rng.Next(-4, 5); return a; }
        var q = Ints((long)qRows * heads * d); var k = Ints((long)block * kv * d); var v = c.Rand((long)block * kv * d);

        var cq = c.Cpu.Allocate(1, kv * d); Ref(c).GroupMean(c.OnCpu(q, qRows, heads * d), heads, kv, cq);
        var cs = c.Cpu.Allocate(block, kv); var ck = c.OnCpu(k, block, kv * d);
        Ref(c).HeadDot(ck, cq, kv, cs);
        using var cRows = Ref(c).AllocateRows(passing, kv); Ref(c).SelectPassing(cs, kv, cRows);
        var cK = c.Cpu.Allocate(passing, kv * d); Ref(c).GatherHeadRows(ck, kv, cRows, cK);
        var cV = c.Cpu.Allocate(passing, kv * d); Ref(c).GatherHeadRows(c.OnCpu(v, block, kv * d), kv, cRows, cV);

        var ops = c.Gpu.Passing;
        var gq = c.Poisoned(1, kv * d, CudaDType.F32); ops.GroupMean(c.OnGpu(q, qRows, heads * d), heads, kv, gq);
        var gs = c.Poisoned(block, kv, CudaDType.F32); var gk = c.OnGpu(k, block, kv * d);
        ops.HeadDot(gk, gq, kv, gs);
        using var gRows = ops.AllocateRows(passing, kv); ops.SelectPassing(gs, kv, gRows);
        var gK = c.Poisoned(passing, kv * d); ops.GatherHeadRows(gk, kv, gRows, gK);
        var gV = c.Poisoned(passing, kv * d); ops.GatherHeadRows(c.OnGpu(v, block, kv * d), kv, gRows, gV);

        c.Compare("gathered K", Down(c.Gpu, gK), Down(c.Cpu, cK), 0);
        c.Compare("gathered V", Down(c.Gpu, gV), Down(c.Cpu, cV), 0);
        // Read back only after the gathers ran: which rows were picked, for the report when the gathers differ.
        c.Compare("picked rows", Rows(ops, gRows), Rows(Ref(c), cRows), 0);
    }
}
