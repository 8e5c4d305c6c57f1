using Apb.Backends;
using Apb.Backends.Cuda;
using static Apb.Bench.Kernels.KernelBenchContext;

using Apb.Strategies.Apb;

namespace Apb.Bench.Kernels;

/// <summary>
/// APB's passing ops on the device (Kernels/apb.cu, IBackend.Passing) at APB's shapes: a 128K context over 8 ranks is
/// a 16K-row block per rank, l_p = 2048 rows passed per KV head (the paper's length; ApbDefaults passes 1024 there),
/// 8 KV heads (Llama-3.1-8B), d 128, 64 query rows of 32 heads. group_mean makes qbar, head_dot scores the block's
/// keys, select_passing max-pools and picks the top l_p rows per head (and, best first, orders them for a passing
/// budget's prefixes: docs/apb-algorithm.md 2.8), gather_head_rows copies those rows of K and V;
/// "chain" is all four as ApbAttention runs them, the selected rows never leaving the device. Bytes: what each op must
/// read and write once.
/// </summary>
public sealed class PassingHarness : KernelHarness
{
    const int Passing = 2048, KvHeads = 8, Heads = 32, D = 128, QueryRows = 64;

    public override string Name => "passing";
    public override string Summary => $"APB scoring + selection + gather: block rows x {KvHeads} KV heads x d {D}, l_p {Passing}, {QueryRows} query rows x {Heads} heads";
    public override string SizeMeaning => "block rows per rank (context / ranks)";
    public override int[] DefaultSizes => [16384, 32768];

    public override void Check(KernelBenchContext ctx)
    {
        const int rows = 1000, count = 100, kv = 2, d = 64;
        var ops = ctx.Gpu.Passing; var cpu = ctx.Cpu.Passing;
        var k = ctx.HostValues((long)rows * kv * d); var vec = ctx.HostValues(kv * d); var v = ctx.HostValues((long)rows * kv * d);
        var cs = ctx.Cpu.Allocate(rows, kv); cpu.HeadDot(ctx.OnCpu(k, rows, kv * d), ctx.OnCpu(vec, 1, kv * d), kv, cs);
        using var gk = ctx.OnGpu(k, rows, kv * d); using var gvec = ctx.OnGpu(vec, 1, kv * d, CudaDType.F32);
        using var gs = ctx.Gpu.AllocateF32(rows, kv);
        ops.HeadDot(gk, gvec, kv, gs);
        var scores = Down(ctx.Gpu, gs);
        ctx.Expect($"head_dot [{rows}, {kv}x{d}]", scores, Down(ctx.Cpu, cs), 1e-5);

        // Selection and gather from the GPU's own scores on both sides: identical inputs, so identical rows.
        using var gRows = ops.AllocateRows(count, kv); ops.SelectPassing(gs, kv, gRows);
        using var cRows = cpu.AllocateRows(count, kv); cpu.SelectPassing(ctx.OnCpu(scores, rows, kv), kv, cRows);
        var got = new int[count * kv]; ops.Download(gRows, got);
        var want = new int[count * kv]; cpu.Download(cRows, want);
        ctx.Expect($"select_passing {count} of {rows} rows", got.Select(i => (float)i).ToArray(), want.Select(i => (float)i).ToArray(), 0);
        using (var gBest = ops.AllocateRows(count, kv))
        using (var cBest = cpu.AllocateRows(count, kv))
        {
            ops.SelectPassing(gs, kv, gBest, bestFirst: true); cpu.SelectPassing(ctx.OnCpu(scores, rows, kv), kv, cBest, bestFirst: true);
            var gotBest = new int[count * kv]; ops.Download(gBest, gotBest);
            var wantBest = new int[count * kv]; cpu.Download(cBest, wantBest);
            ctx.Expect($"select_passing best first {count} of {rows} rows", gotBest.Select(i => (float)i).ToArray(), wantBest.Select(i => (float)i).ToArray(), 0);
        }
        using var gv = ctx.OnGpu(v, rows, kv * d); using var gg = ctx.Gpu.Allocate(count, kv * d, CudaDType.BF16);
        ops.GatherHeadRows(gv, kv, gRows, gg);
        var cg = ctx.Cpu.Allocate(count, kv * d); cpu.GatherHeadRows(ctx.OnCpu(v, rows, kv * d), kv, cRows, cg);
        ctx.Expect($"gather_head_rows {count} of {rows} rows", Down(ctx.Gpu, gg), Down(ctx.Cpu, cg), 0);
    }

    public override IEnumerable<KernelRow> Time(KernelBenchContext ctx, int rows)
    {
        if (rows < Passing) throw new ApbException($"bench kernel passing: a block of {rows} rows cannot pass {Passing} rows per head; give --lengths of at least {Passing}");
        var gpu = ctx.Gpu; var ops = gpu.Passing;
        using var q = ctx.DeviceRandom(QueryRows, Heads * D);
        using var k = ctx.DeviceRandom(rows, KvHeads * D); using var v = ctx.DeviceRandom(rows, KvHeads * D);
        using var qbar = gpu.AllocateF32(1, KvHeads * D); using var scores = gpu.AllocateF32(rows, KvHeads);
        using var picked = ops.AllocateRows(Passing, KvHeads);
        using var sentK = gpu.Allocate(Passing, KvHeads * D, CudaDType.BF16); using var sentV = gpu.Allocate(Passing, KvHeads * D, CudaDType.BF16);
        string shape = $"{rows} rows x {KvHeads} heads x d {D}, l_p {Passing}";
        double qBytes = (double)QueryRows * Heads * D * 2, kBytes = (double)rows * KvHeads * D * 2, sBytes = (double)rows * KvHeads * 4;
        double picks = (double)Passing * KvHeads * 4, gathered = 2.0 * Passing * KvHeads * D * 2;

        void GroupMean() => ops.GroupMean(q, Heads, KvHeads, qbar);
        void HeadDot() => ops.HeadDot(k, qbar, KvHeads, scores);
        void Select() => ops.SelectPassing(scores, KvHeads, picked);
        void SelectBestFirst() => ops.SelectPassing(scores, KvHeads, picked, bestFirst: true);
        void Gather() { ops.GatherHeadRows(k, KvHeads, picked, sentK); ops.GatherHeadRows(v, KvHeads, picked, sentV); }
        GroupMean(); HeadDot(); Select(); // inputs for the later ops when each is timed alone

        yield return new KernelRow("group_mean", "cuda", $"{QueryRows} rows x {Heads} heads -> {KvHeads} x d {D}", rows, ctx.TimeGpu(GroupMean, 20),
            new Work(Bound.Memory, qBytes, $"read q: {QueryRows} x {Heads} x {D} x 2 B"));
        yield return new KernelRow("head_dot", "cuda", shape, rows, ctx.TimeGpu(HeadDot, 20),
            new Work(Bound.Memory, kBytes + sBytes, $"read K + write scores: {rows} x {KvHeads} x ({D} x 2 + 4) B"));
        yield return new KernelRow("select_passing", "cuda", shape, rows, ctx.TimeGpu(Select, 20),
            new Work(Bound.Memory, 3 * sBytes + picks, $"read scores, write + read pooled: 3 x {rows} x {KvHeads} x 4 B + {Passing} x {KvHeads} indices x 4 B"));
        // The ranking adds l_p^2 comparisons per head in shared memory and a read and write of the indices: timed with the selection.
        yield return new KernelRow("select_passing best first", "cuda", shape, rows, ctx.TimeGpu(SelectBestFirst, 20),
            new Work(Bound.Memory, 3 * sBytes + 3 * picks, $"the selection's bytes + the ranking's read and write of {Passing} x {KvHeads} indices"));
        Select(); // ascending again for the gather and chain rows below
        yield return new KernelRow("gather_head_rows", "K + V", shape, rows, ctx.TimeGpu(Gather, 20),
            new Work(Bound.Memory, 2 * gathered + picks, $"read + write: 2 x 2 x {Passing} x {KvHeads} x {D} x 2 B + indices"));
        yield return new KernelRow("passing chain", "on device", shape, rows, ctx.TimeGpu(() => { GroupMean(); HeadDot(); Select(); Gather(); }, 20),
            new Work(Bound.Memory, qBytes + kBytes + 4 * sBytes + 2 * picks + 2 * gathered, "the four ops' bytes together"));
        foreach (var row in LastRank(ctx, rows, q, k, v)) yield return row;
    }

    /// <summary>
    /// Issue #22's first bar on one layer of the last (busiest) rank of a 128K prefill split into 131072 / rows ranks, each
    /// part timed alone on the GPU: each scorer as ApbAttention runs it (the query-aware one with the novelty term; the
    /// retaining heads, random fc1 [1024, (n_h + 2 n_kv) d] and fc2, mixed with the novelty term at weight 0.5) with the
    /// selection and the gather, against the rank's attention (its anchor rows causal, its block rows bottom-right causal
    /// over [passing of every earlier rank; anchor; block]: exactly APB's mask). Rows "share" give scorer / attention.
    /// </summary>
    IEnumerable<KernelRow> LastRank(KernelBenchContext ctx, int rows, Tensor q, Tensor k, Tensor v)
    {
        var gpu = ctx.Gpu;
        var config = Model.ModelShapes.Get("llama-3.1-8b");
        int ranks = Math.Max(1, 131072 / rows), anchor = 4096, passing = (ranks - 1) * Passing, keys = passing + anchor + rows;
        string shape = $"rank {ranks - 1} of {ranks} at 128K: block {rows}, anchor {anchor}, passing {passing}";
        using var qFull = ctx.DeviceRandom(anchor + rows, Heads * D);
        using var kFull = ctx.DeviceRandom(keys, KvHeads * D); using var vFull = ctx.DeviceRandom(keys, KvHeads * D);
        using var o = gpu.Allocate(anchor + rows, Heads * D, CudaDType.BF16);
        var qBlock = qFull.RowSlice(anchor, rows); var oBlock = o.RowSlice(anchor, rows);
        void Attend()
        {
            gpu.Attention(qFull.RowSlice(0, anchor), kFull.RowSlice(passing, anchor), vFull.RowSlice(passing, anchor), Heads, KvHeads,
                AttentionMask.Causal, o.RowSlice(0, anchor), null);
            gpu.Attention(qBlock, kFull, vFull, Heads, KvHeads, AttentionMask.Causal, oBlock, null);
        }
        double pairs = (double)anchor * (anchor + 1) / 2 + (double)rows * (passing + anchor) + (double)rows * (rows + 1) / 2;
        var attention = ctx.TimeGpu(Attend, 5);
        yield return new KernelRow("apb rank attention", "cuda", shape, rows, attention,
            new Work(Bound.Compute, 4.0 * pairs * Heads * D, $"4 x {pairs / 1e6:F0}M visible pairs x {Heads} heads x d {D}"));

        using var chains = new ApbScorerChains(gpu, config, Passing);
        void QueryAware() => chains.QueryAware(q, k, v);
        void Retaining() => chains.Retaining(qBlock, k, v);
        foreach (var (name, work) in new (string, Action)[] { ("query-aware scorer + select + gather", QueryAware), ("retaining heads + novelty + select + gather", Retaining) })
        {
            var t = ctx.TimeGpu(work, 10);
            yield return new KernelRow(name, "cuda", shape, rows, t,
                new Work(Bound.Memory, (double)rows * KvHeads * D * 2 * 2, $"at least K and V of the block once: {rows} x {KvHeads} x {D} x 2 x 2 B"));
            ctx.Log.WriteLine($"bench kernel passing: {name}, {shape}: {t.MedianMs:F3} ms against the rank's attention {attention.MedianMs:F3} ms = {t.MedianMs / attention.MedianMs:P1} (issue #22's bar: 10%)");
        }
    }
}
