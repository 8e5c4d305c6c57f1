using Apb.Backends;
using Apb.Backends.Cuda;
using Apb.Model;
using Apb.Runtime;
using Apb.Strategies;
using Apb.Tests.Distributed;

namespace Apb.Gpu.Tests;

/// <summary>
/// APB's machinery without host round trips (issue #22): a whole APB prefill on 4 in-process ranks, each its own
/// CudaBackend on this GPU, with --timings' host-transfer accounting (Profile.LayerTransfers: the driver copies inside
/// the layers, less the communicator's, which passes tensors through host memory between in-process ranks).
/// Inside the layers nothing may come back to the host (a download waits for all queued work: a round trip), and the
/// only upload is the rope positions of a forward's first layer (the later layers rotate at the same positions, so the
/// backend keeps them): at most one per forward, the block's and the query's star phase.
/// </summary>
public static class MachineryCases
{
    public static IEnumerable<GpuCase> All()
    {
        foreach (var (rows, qd, kvd) in new[] { (1000, 4096, 1024), (37, 1024, 256), (5, 48, 16) })
            yield return new("passing", $"concat_columns [{rows}, {qd} + {kvd} + {kvd}] from row slices", c => Concat(c, rows, qd, kvd));
        foreach (var (rows, k, n) in new[] { (2048, 1024, 8), (37, 1000, 4), (3, 64, 16), (300, 24, 1) })
            yield return new("passing", $"silu_linear [{rows}, {k}] x W^T [{k}, {n}]", c => SiluLinear(c, rows, k, n));
        yield return new("passing", "retaining-head scores, small shape (8/2 heads, d=128, hidden 1024), 777 rows", RetainingScores);
        foreach (var scorer in new[] { ScorerKind.Retaining, ScorerKind.Query })
            yield return new("passing", $"APB prefill on 4 CUDA ranks ({ScorerChoice.Label(scorer)}, random weights): no host round trip inside the layers",
                c => NoRoundTrips(c, scorer));
        // A passing budget orders the selection best first and reads prefixes: on the device too.
        yield return new("passing", "APB prefill on 4 CUDA ranks (retaining heads, passing budget 40, random weights): no host round trip inside the layers",
            c => NoRoundTrips(c, ScorerKind.Retaining, budget: 40));
    }

    /// <summary>Exact: a copy. The sources are row slices past their first rows, as the block's q, k and v are.</summary>
    static void Concat(GpuCheck c, int rows, int qd, int kvd)
    {
        var q = c.Rand((long)(rows + 2) * qd); var k = c.Rand((long)(rows + 2) * kvd); var v = c.Rand((long)(rows + 2) * kvd);
        var co = c.Cpu.Allocate(rows, qd + 2 * kvd);
        c.Cpu.Passing.ConcatColumns(c.OnCpu(q, rows + 2, qd).RowSlice(1, rows + 1), c.OnCpu(k, rows + 2, kvd).RowSlice(2, rows),
            c.OnCpu(v, rows + 2, kvd).RowSlice(1, rows + 1), co);
        var go = c.Poisoned(rows, qd + 2 * kvd);
        c.Gpu.Passing.ConcatColumns(c.OnGpu(q, rows + 2, qd).RowSlice(1, rows + 1), c.OnGpu(k, rows + 2, kvd).RowSlice(2, rows),
            c.OnGpu(v, rows + 2, kvd).RowSlice(1, rows + 1), go);
        c.Compare("concat_columns", GpuCheck.Down(c.Gpu, go), GpuCheck.Down(c.Cpu, co), 0);
    }

    /// <summary>fp32 sums on both sides; the output is rounded to bf16 on the GPU.</summary>
    static void SiluLinear(GpuCheck c, int rows, int k, int n)
    {
        var h = c.Rand((long)rows * k, 2f); var w = c.Rand((long)n * k, 0.05f);
        var view = c.Weight("fc2", w, [n, k], Checkpoints.DType.BF16);
        var co = c.Cpu.Allocate(rows, n);
        c.Cpu.Passing.SiluLinear(c.OnCpu(h, rows, k), c.Cpu.Load(view), co);
        var go = c.Poisoned(rows, n);
        c.Gpu.Passing.SiluLinear(c.OnGpu(h, rows, k), c.Gpu.Load(view), go);
        c.Compare("silu_linear", GpuCheck.Down(c.Gpu, go), GpuCheck.Down(c.Cpu, co), GpuCheck.Bf16Tolerance);
    }

    /// <summary>The scorer as ApbAttention runs it (concat, fc1, fused SiLU + fc2) on both backends, the same heads file.</summary>
    static void RetainingScores(GpuCheck c)
    {
        const int rows = 777, layer = 1;
        var config = ModelShapes.Get("small");
        using var heads = Strategies.Apb.RetainingHeads.Open(RetainingHeadsFile.Write(config, 1024, seed: 11), config);
        var q = c.Rand((long)(rows + 3) * config.QDim); var k = c.Rand((long)(rows + 3) * config.KvDim); var v = c.Rand((long)(rows + 3) * config.KvDim);
        var want = new Strategies.Apb.RetainingHeadScorer(c.Cpu, config, heads).Score(layer,
            c.OnCpu(q, rows + 3, config.QDim), c.OnCpu(k, rows + 3, config.KvDim), c.OnCpu(v, rows + 3, config.KvDim), rows);
        var got = new Strategies.Apb.RetainingHeadScorer(c.Gpu, config, heads).Score(layer,
            c.OnGpu(q, rows + 3, config.QDim), c.OnGpu(k, rows + 3, config.KvDim), c.OnGpu(v, rows + 3, config.KvDim), rows);
        c.Compare("retaining-head scores", got, want, 3e-2);
    }

    static void NoRoundTrips(GpuCheck c, ScorerKind scorer, int budget = 0)
    {
        const int ranks = 4, context = 1024, queryTokens = 16, anchor = 64;
        var config = ModelShapes.Get("small");
        var options = new StrategyOptions
        {
            Strategy = StrategyKind.Apb, Ranks = ranks, FallbackBelow = 0, AnchorLength = anchor, PassingLength = 32, Scorer = scorer,
            PassingBudget = budget, Timings = true, RetainingHeadsPath = scorer == ScorerKind.Retaining ? RetainingHeadsFile.Write(config, 64, seed: 7) : null,
        };
        using var group = RankGroup.Create(config, options, _ => new CudaBackend(c.Gpu.Context.Device.Ordinal), b => RandomWeights.Create(config, b));
        var ids = Enumerable.Range(0, context + queryTokens).Select(_ => c.Rng.Next(config.VocabSize)).ToArray();
        var r = group.Prefill(new PrefillRequest(ids[..context], ids[context..]));
        var profiles = group.Reports(r.Sequence).Select(x => x.Prefill!).ToArray();
        group.Release([r.Sequence]);

        int nonFinite = r.Logits.Count(x => !float.IsFinite(x));
        c.Record("prefill logits finite", nonFinite, 0, nonFinite == 0 && r.Logits.Length == config.VocabSize, $"{r.Logits.Length} logits");
        // One rope upload per forward at most: the block's rows (anchor + block, plus the last rank's query) and d/2
        // frequencies, as ints; the star phase's query rows likewise.
        long ropeBound = 2L * (anchor + context / ranks + queryTokens + config.HeadDim / 2) * 4;
        for (int rank = 0; rank < ranks; rank++)
        {
            var t = profiles[rank].LayerTransfers;
            c.Record($"rank {rank}: device-to-host bytes inside the layers", t.ToHostBytes, 0, t.ToHostBytes == 0 && t.ToHostCopies == 0,
                $"{t.ToHostCopies} copies; {profiles[rank].HostBytes} host bytes in all (communication and embedding included)");
            c.Record($"rank {rank}: host-to-device copies inside the layers (rope positions only)", t.ToDeviceCopies, 2,
                t.ToDeviceCopies <= 2 && t.ToDeviceBytes <= ropeBound, $"{t.ToDeviceBytes} bytes, at most {ropeBound}");
        }
    }
}
