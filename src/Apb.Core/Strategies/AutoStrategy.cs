using Apb.Strategies.Apb;

namespace Apb.Strategies;

/// <summary>
/// What `--strategy auto` runs for one request (docs/apb-algorithm.md, section 2.7), in this order:
///   1. one rank: full attention;
///   2. a context shorter than --fallback-below (32K): full attention on one rank, as APB's own fallback (splitting
///      costs more than it saves there; per-call overheads are not in the cost model below);
///   3. --exact: the zigzag ring (exact, balanced causal work);
///   4. otherwise APB when it can run (its anchor must hold the chat header and the query) and its slowest rank costs
///      less than the zigzag ring's, else the zigzag ring: a long query grows APB's anchor until an exact ring is cheaper.
/// Contiguous APB, not apb-balanced: the balanced layout's slowest rank is 1.1x (default l_p) to 1.2x faster at 128K in
/// the one-GPU model of the ranks, but it lost 1.0-1.5 RULER points against contiguous APB at 16K on our model
/// (bench/results/balanced-gpu-20261203), is level with it at 64K (-0.8 ± 1.1 on 8 ranks, +0.1 ± 0.8 on 4;
/// bench/results/session26-gpu-20261205), and its speed-up has not been timed on several GPUs.
/// The cost of a rank is one layer's work in FLOPs, counted from the plan (<see cref="RankWork"/>):
///   pairs x 4 n_h d (attention) + local rows x 2 x (the layer's weights) (projections and MLP) + received bytes x F / B,
/// where received bytes are K and V rows of kv_dim in bf16 and F / B converts bytes to FLOPs at an H200's dense bf16
/// rate (989 TFLOP/s) over NVLink's 450 GB/s per direction, both from NVIDIA's H200 specification. The shape is
/// Llama-3.1-8B's for every model, so the choice depends only on the request and the options, the same on every machine.
/// </summary>
public static class AutoStrategy
{
    // Llama-3.1-8B: 32 heads x 128, 8 KV heads, hidden 4096, intermediate 14336.
    const double PairFlops = 4.0 * 32 * 128;
    const double RowFlops = 2.0 * (4096.0 * 4096 + 2 * 4096.0 * 1024 + 4096.0 * 4096 + 3 * 4096.0 * 14336);
    const double RowBytes = 2 * 1024 * 2;
    const double FlopsPerByte = 989e12 / 450e9;

    /// <summary>One layer's cost of rank's work in FLOPs (see the class comment).</summary>
    public static double Cost(RankWork w) => w.Pairs * PairFlops + w.LocalRows * RowFlops + w.Received * RowBytes * FlopsPerByte;

    /// <summary>The slowest rank's cost: it gates the prefill.</summary>
    public static double Cost(StrategyKind kind, SequencePlan plan) => RankWork.All(kind, plan).Max(Cost);

    /// <summary>The strategy auto runs for this request and why, in one line.</summary>
    public static (StrategyKind Strategy, string Why) Choose(StrategyOptions o, int contextLength, int queryLength, int anchorInsertAt)
    {
        int n = contextLength, h = o.Ranks;
        if (h == 1) return (StrategyKind.Full, "auto: one rank, so full attention");
        if (n < o.FallbackBelow)
            return (StrategyKind.Full, $"auto: the context of {n} tokens is below {o.FallbackBelow} (--fallback-below), so full attention ran on one rank");
        if (n < h) return (StrategyKind.Full, $"auto: the context of {n} tokens is shorter than {h} ranks, so full attention ran on one rank");
        var zigzag = SequencePlan.Zigzag(n, h);
        if (o.Exact) return (StrategyKind.Zigzag, $"auto: --exact, so the zigzag ring over {h} ranks");
        SequencePlan apb;
        try
        {
            apb = SequencePlanner.Plan(o with { Strategy = StrategyKind.Apb, FallbackBelow = 0 }, n, queryLength, anchorInsertAt).Plan!;
        }
        catch (ApbException e)
        {
            return (StrategyKind.Zigzag, $"auto: APB cannot run this request ({e.Message}), so the exact zigzag ring over {h} ranks");
        }
        double ca = Cost(StrategyKind.Apb, apb), cz = Cost(StrategyKind.Zigzag, zigzag);
        string costs = $"slowest rank {ca / 1e12:F2} TFLOP a layer for APB ({apb.ApbLengths}) against {cz / 1e12:F2} for the zigzag ring";
        return ca < cz
            ? (StrategyKind.Apb, $"auto: apb over {h} ranks: {costs}")
            : (StrategyKind.Zigzag, $"auto: the exact zigzag ring over {h} ranks: {costs} (the anchor of {apb.AnchorLength} tokens costs more than it saves)");
    }
}
