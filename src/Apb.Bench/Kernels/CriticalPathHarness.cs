using Apb.Backends;
using Apb.Backends.Cuda;
using Apb.Bench.Prefill;
using Apb.Model;
using Apb.Strategies;
using Apb.Strategies.Apb;
using static Apb.Bench.Kernels.KernelBenchContext;

namespace Apb.Bench.Kernels;

/// <summary>
/// The multi-GPU critical path of one 128K prefill (Llama-3.1-8B shape), APB (contiguous and balanced) against the
/// zigzag ring, from each rank's work timed alone on one GPU (issues #22 and #20): per rank and layer, its attention
/// calls with exactly its masks (APB: anchor rows causal, each chunk's rows bottom-right causal over [passing of every
/// earlier chunk; anchor; chunk], from the plan the strategy runs: one chunk per rank contiguous, two balanced; zigzag:
/// each of its two chunks bottom-right causal over every key up to the chunk's end), its GEMMs for its rows (QKV, O,
/// gate, up, down of one layer, random weights) and, for APB ranks that send, the query-aware scorer's chain. A layer
/// costs the slowest rank's time; the link adds the bytes a rank receives per layer at NVLink 4's 450 GB/s each way
/// (serial: added; overlapped: the larger of the two). 32 layers. Both APB layouts are modeled without a passing
/// budget (the paper's rule) and with the default one (twice l_p; docs/apb-algorithm.md 2.8; its best-first ranking
/// kernel is not in the scorer's time). In-process ranks on one GPU cannot show this: their
/// contexts share the GPU, so a rank's phase times include the others' kernels.
/// </summary>
public sealed class CriticalPathHarness : KernelHarness
{
    const int Context = 131072, Layers = 32;
    /// <summary>Query tokens in the anchor: the rows the scorer averages into its query, and what the plans check the anchor holds.</summary>
    const int QueryRows = 64;

    public override string Name => "critical-path";
    public override string Summary => "APB (contiguous and balanced) vs zigzag at 128K, Llama-3.1-8B shape: each rank's attention, GEMMs and scoring timed alone; the modeled multi-GPU prefill";
    public override string SizeMeaning => "ranks (GPUs) the 128K context is split over";
    public override int[] DefaultSizes => [8, 4];

    public override void Check(KernelBenchContext ctx)
    {
        // The one mask this model leans on: bottom-right causal with more keys than queries (a prefix every row sees).
        const int tq = 70, tk = 200, heads = 4, kv = 2, d = 128;
        var q = ctx.HostValues(tq * heads * d); var k = ctx.HostValues(tk * kv * d); var v = ctx.HostValues(tk * kv * d);
        var co = ctx.Cpu.Allocate(tq, heads * d);
        ctx.Cpu.Attention(ctx.OnCpu(q, tq, heads * d), ctx.OnCpu(k, tk, kv * d), ctx.OnCpu(v, tk, kv * d), heads, kv, AttentionMask.Causal, co, null);
        using var gq = ctx.OnGpu(q, tq, heads * d); using var gk = ctx.OnGpu(k, tk, kv * d); using var gv = ctx.OnGpu(v, tk, kv * d);
        using var go = ctx.Gpu.Allocate(tq, heads * d, CudaDType.BF16);
        ctx.Gpu.Attention(gq, gk, gv, heads, kv, AttentionMask.Causal, go, null);
        ctx.Expect($"bottom-right causal Tq={tq} Tk={tk}", Down(ctx.Gpu, go), Down(ctx.Cpu, co), 2e-2);
    }

    public override IEnumerable<KernelRow> Time(KernelBenchContext ctx, int ranks)
    {
        if (ranks < 2 || Context % (2 * ranks) != 0) throw new ApbException($"bench kernel critical-path: {ranks} ranks do not split {Context} tokens into 2 x ranks chunks; give --lengths 2, 4 or 8");
        var gpu = ctx.Gpu;
        var c = ModelShapes.Get("llama-3.1-8b");
        int heads = c.NumAttentionHeads, kvHeads = c.NumKeyValueHeads, d = c.HeadDim, qd = heads * d, kvd = kvHeads * d;
        var (anchor, passing) = ApbDefaults.For(Context, ranks);
        int block = Context / ranks, chunk = Context / (2 * ranks);
        var rows = new List<KernelRow>();

        // The largest tensors any call below needs: queries of a whole rank, keys of the whole context.
        using var q = ctx.DeviceRandom(anchor + block, qd);
        using var k = ctx.DeviceRandom(Context + anchor, kvd); using var v = ctx.DeviceRandom(Context + anchor, kvd);
        using var o = gpu.Allocate(anchor + block, qd, CudaDType.BF16);
        double Attend(string what, int tq, int tk, int qAt = 0)
        {
            var t = ctx.TimeGpu(() => gpu.Attention(q.RowSlice(qAt, tq), k.RowSlice(0, tk), v.RowSlice(0, tk), heads, kvHeads,
                AttentionMask.Causal, o.RowSlice(qAt, tq), null), 3);
            double pairs = (double)tq * (tk - tq) + (double)tq * (tq + 1) / 2;
            rows.Add(new KernelRow("attention", what, $"Tq={tq} Tk={tk} bottom-right causal", ranks, t,
                new Work(Bound.Compute, 4.0 * pairs * heads * d, $"4 x {pairs / 1e6:F0}M pairs x {heads} heads x d {d}")));
            return t.MedianMs;
        }

        // One layer's GEMMs for a rank's rows, timed once per row count.
        // One layer's random weights on the device, per call: they stay until the backend goes (an IWeight is not disposable).
        var w = new[] { ("qkv", qd + 2 * kvd, c.HiddenSize), ("o_proj", c.HiddenSize, qd), ("gate", c.IntermediateSize, c.HiddenSize),
                        ("up", c.IntermediateSize, c.HiddenSize), ("down", c.HiddenSize, c.IntermediateSize) }
            .Select((x, i) => (x.Item1, W: gpu.LoadRandom(x.Item1, x.Item2, x.Item3, 100 + (ulong)i, 0.02f, 0f))).ToArray();
        var gemmMs = new Dictionary<int, double>();
        double Gemms(int n)
        {
            if (gemmMs.TryGetValue(n, out double ms)) return ms;
            // An input and an output of each width the five weights read and write.
            var buffers = w.SelectMany(e => new[] { e.W.Cols, e.W.Rows }).Distinct().ToDictionary(cols => cols, cols => ctx.DeviceRandom(n, cols));
            var t = ctx.TimeGpu(() =>
            {
                foreach (var (_, weight) in w)
                    gpu.Linear(buffers[weight.Cols], weight, null, buffers[weight.Rows]);
            }, 3);
            foreach (var b in buffers.Values) b.Dispose();
            double flops = 2.0 * n * w.Sum(e => (double)e.W.Rows * e.W.Cols);
            rows.Add(new KernelRow("gemm", "layer", $"{n} rows: qkv, o_proj, gate, up, down", ranks, t, new Work(Bound.Compute, flops, $"2 x {n} rows x {w.Sum(e => (double)e.W.Rows * e.W.Cols) / 1e6:F0}M weights")));
            return gemmMs[n] = t.MedianMs;
        }

        // APB's scorer chain on a chunk that sends (the query-aware scorer, selection and gather of its l_p rows),
        // timed once per (rows, l_p): a contiguous block with l_p, a balanced chunk (half a block) with ceil(l_p / 2).
        var scoringMs = new Dictionary<(int Rows, int Passing), double>();
        double Scoring(int n, int p)
        {
            if (scoringMs.TryGetValue((n, p), out double ms)) return ms;
            using var chains = new ApbScorerChains(gpu, c, p);
            var t = ctx.TimeGpu(() => chains.QueryAware(q.RowSlice(0, QueryRows), k.RowSlice(0, n), v.RowSlice(0, n)), 5);
            rows.Add(new KernelRow("apb scoring", "query-aware", $"{n} rows, l_p {p}", ranks, t, new Work(Bound.Memory, 2.0 * n * kvd * 2, "K and V of the chunk once")));
            return scoringMs[(n, p)] = t.MedianMs;
        }

        // Per rank and layer, ms, from the plan the strategy runs (RankWork counts the same calls): the anchor rows
        // causally, then each chunk's rows against [passing; anchor; chunk] bottom-right aligned (balanced APB's chunk 0
        // against itself only), the chunk's scoring when it selects, and the GEMMs of the rank's rows.
        double[] Anchored(string tag, SequencePlan plan)
        {
            var ms = new double[ranks];
            for (int r = 0; r < ranks; r++)
            {
                int a = plan.AnchorRows(r), lc = plan.ChunkLength, at = a;
                double t = a > 0 ? Attend($"{tag} rank {r} anchor rows", a, a) : 0;
                foreach (int ch in plan.ChunksOf(r))
                {
                    bool alone = plan.Layout == SequenceLayout.Zigzag && ch == 0;
                    int keys = alone ? lc : plan.ChunkPassingRows(ch) + a + lc;
                    t += Attend($"{tag} rank {r} chunk {ch} rows", lc, keys, at);
                    if (plan.ChunkScores(ch)) t += Scoring(plan.ChunkSelectableRows(ch), plan.ChunkPassingLength);
                    at += lc;
                }
                ms[r] = t + Gemms(plan.LocalRows(r));
            }
            return ms;
        }
        int budget = ApbDefaults.Budget(passing);
        var apbPlan = SequencePlan.Apb(Context, ranks, anchor, passing, QueryRows, 0);
        var balancedPlan = SequencePlan.ApbBalanced(Context, ranks, anchor, passing, QueryRows, 0);
        var apbBudgetPlan = SequencePlan.Apb(Context, ranks, anchor, passing, QueryRows, 0, budget);
        var balancedBudgetPlan = SequencePlan.ApbBalanced(Context, ranks, anchor, passing, QueryRows, 0, budget);
        var apb = Anchored("apb", apbPlan);
        var balanced = Anchored("apb-balanced", balancedPlan);
        var apbBudget = Anchored($"apb B {budget}", apbBudgetPlan);
        var balancedBudget = Anchored($"apb-balanced B {budget}", balancedBudgetPlan);
        var zigzag = new double[ranks];
        for (int r = 0; r < ranks; r++)
            zigzag[r] = Attend($"zigzag rank {r} chunk {r}", chunk, (r + 1) * chunk) +
                        Attend($"zigzag rank {r} chunk {2 * ranks - 1 - r}", chunk, (2 * ranks - r) * chunk) + Gemms(block);

        // Bytes a rank receives per layer (the most any rank does): APB's all-gather of every other rank's selections
        // (RankWork.Received), the ring's H - 1 steps of a rank's two chunks of K and V.
        double bytesPerRow = 2.0 * kvd * 2;
        double LinkMs(double rowsPerKvHead) => rowsPerKvHead * bytesPerRow / (PrefillModel.NvLink4GBps * 1e9) * 1e3;
        double MostReceived(StrategyKind kind, SequencePlan plan) => RankWork.All(kind, plan).Max(x => (double)x.Received);
        var models = new (string Name, double[] PerRank, double Link)[]
        {
            ("apb", apb, LinkMs(MostReceived(StrategyKind.Apb, apbPlan))),
            ("apb-balanced", balanced, LinkMs(MostReceived(StrategyKind.ApbBalanced, balancedPlan))),
            ("zigzag", zigzag, LinkMs((ranks - 1) * (double)block)),
            ($"apb B {budget}", apbBudget, LinkMs(MostReceived(StrategyKind.Apb, apbBudgetPlan))),
            ($"apb-balanced B {budget}", balancedBudget, LinkMs(MostReceived(StrategyKind.ApbBalanced, balancedBudgetPlan))),
        };
        ctx.Log.WriteLine($"critical path, {ranks} GPUs, 128K (l_a {anchor}, l_p {passing}): per rank and layer, ms (attention + GEMMs + scoring):");
        foreach (var (name, perRank, link) in models)
            ctx.Log.WriteLine($"  {name,-23} {string.Join(" ", perRank.Select(x => x.ToString("F2")))}  (slowest {perRank.Max():F2}, " +
                              $"max/mean {perRank.Max() / perRank.Average():F3}; link {link:F3} per layer)");
        double Serial((string, double[] PerRank, double Link) m) => Layers * (m.PerRank.Max() + m.Link) / 1e3;
        double Overlapped((string, double[] PerRank, double Link) m) => Layers * Math.Max(m.PerRank.Max(), m.Link) / 1e3;
        var z = models[2];
        foreach (var m in models)
            ctx.Log.WriteLine($"  modeled prefill, {Layers} layers, {m.Name}: {Serial(m):F3} s serial ({Overlapped(m):F3} overlapped); " +
                              $"/ zigzag {Serial(m) / Serial(z):F3} serial, {Overlapped(m) / Overlapped(z):F3} overlapped");
        ctx.Log.WriteLine($"  apb-balanced / apb: {Serial(models[1]) / Serial(models[0]):F3} serial, {Overlapped(models[1]) / Overlapped(models[0]):F3} overlapped " +
                          "(issue #22's bar at 8 GPUs: apb / zigzag 0.70; Spava reports 1.18x for a balanced layout with overlap)");
        ctx.Log.WriteLine($"  with the passing budget / without: apb {Serial(models[3]) / Serial(models[0]):F3}, apb-balanced {Serial(models[4]) / Serial(models[1]):F3} serial");
        return rows;
    }
}
