using Apb.Checkpoints;
using Apb.Strategies;

namespace Apb.Bench.Prefill;

/// <summary>
/// The FLOP floor a prefill case is held against. Its memory arithmetic (what a rank needs, whether it fits) is
/// <see cref="RankMemory"/>'s, shared with `apb inspect --context`.
/// </summary>
public static class PrefillArithmetic
{
    /// <summary>FLOPs of an exact causal prefill of t tokens: 2 x layer parameters per token + causal attention.</summary>
    public static double ExactFlops(ModelConfig c, long t)
    {
        double layerParams = (double)c.HiddenSize * (c.QDim + 2.0 * c.KvDim) + (double)c.QDim * c.HiddenSize + 3.0 * c.HiddenSize * c.IntermediateSize;
        return 2 * c.NumHiddenLayers * layerParams * t + 2.0 * c.NumHiddenLayers * c.NumAttentionHeads * c.HeadDim * (double)t * t;
    }
}
