using Apb.Checkpoints;
using Apb.Model;
using Apb.Strategies;
using Apb.Strategies.Apb;

namespace Apb.Bench.Prefill;

/// <summary>
/// The numbers a prefill case is held against. <see cref="EstimateBytes"/>: what one rank needs beyond the weights,
/// generously (the model's per-call workspace for its local rows, the KV caches it keeps, the attention's key-side
/// buffers three times over: received blocks, LSE merges, outputs); a case predicted not to fit on some rank is
/// reported "oom" without running. <see cref="ExactFlops"/>: the FLOP floor of the exact strategies.
/// </summary>
public static class PrefillArithmetic
{
    public static long EstimateBytes(ModelConfig c, StrategyKind s, int n, int q, int ranks)
    {
        long lb = (n + ranks - 1) / ranks;
        var (anchor, passing) = ApbDefaults.For(n, ranks);
        long rows = s switch
        {
            StrategyKind.Full => n + q,
            StrategyKind.Star => 2 * lb,
            StrategyKind.Apb => lb + Math.Max(anchor, q + ApbDefaults.MinAnchorContext),
            _ => lb,
        };
        long keys = s switch
        {
            StrategyKind.Full or StrategyKind.Ulysses => n + q,
            StrategyKind.Apb => rows + (ranks - 1) * (long)passing,
            StrategyKind.Star => rows,
            _ => 2 * lb,
        };
        long workspace = rows * (3L * c.HiddenSize + 2L * c.QDim + 2L * c.KvDim + 2L * c.IntermediateSize) * 2;
        // K and V of every layer, reserved once (KvCache.Reserve). Against bench/results/prefill-20261128-152251 (8B
        // shape, 2 H200, 128K; peaks there include the ~15 GiB of weights): this estimate is ~18 GiB for APB against a
        // measured 15.2 beyond the weights, ~26 for Star against 20.7, ~34 for full against 28.9.
        long cache = c.NumHiddenLayers * (long)(s == StrategyKind.Full ? n + q + 64 : lb + q) * 2 * c.KvDim * 2;
        long attention = 3 * keys * (c.QDim + 2L * c.KvDim) * 2 + 2 * rows * c.NumAttentionHeads * 4L;
        long logits = (long)q * c.VocabSize * 4;
        return workspace + cache + attention + logits + (1L << 30);
    }

    /// <summary>FLOPs of an exact causal prefill of t tokens: 2 x layer parameters per token + causal attention.</summary>
    public static double ExactFlops(ModelConfig c, long t)
    {
        double layerParams = (double)c.HiddenSize * (c.QDim + 2.0 * c.KvDim) + (double)c.QDim * c.HiddenSize + 3.0 * c.HiddenSize * c.IntermediateSize;
        return 2 * c.NumHiddenLayers * layerParams * t + 2.0 * c.NumHiddenLayers * c.NumAttentionHeads * c.HeadDim * (double)t * t;
    }
}
