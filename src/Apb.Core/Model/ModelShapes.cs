using Apb.Checkpoints;

namespace Apb.Model;

/// <summary>
/// Model shapes for random-weight runs (benchmarks, tests) without a checkpoint: `--shape NAME`.
/// llama-3.1-8b is Llama-3.1-8B's config.json with max_position_embeddings raised to 2M so long-context benchmarks are
/// not refused; small and tiny keep the same architecture at sizes a CPU test or a quick GPU check can afford.
/// </summary>
public static class ModelShapes
{
    public static readonly string[] Names = ["llama-3.1-8b", "small", "tiny"];

    public static ModelConfig Get(string name) => name.ToLowerInvariant() switch
    {
        "llama-3.1-8b" or "llama3.1-8b" or "8b" => Llama(layers: 32, hidden: 4096, heads: 32, kvHeads: 8, headDim: 128, inter: 14336, vocab: 128256),
        // A few hundred MB on a GPU: every kernel path of the 8B shape (d = 128, GQA 4) at a fraction of the time.
        "small" => Llama(layers: 4, hidden: 1024, heads: 8, kvHeads: 2, headDim: 128, inter: 3584, vocab: 32000),
        // For CPU tests: 2 KV heads so Ulysses runs on 2 ranks.
        "tiny" => Llama(layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 16, inter: 128, vocab: 256),
        _ => throw new ApbException($"unknown model shape '{name}': expected one of {string.Join(", ", Names)} (or pass --model DIR)"),
    };

    static ModelConfig Llama(int layers, int hidden, int heads, int kvHeads, int headDim, int inter, int vocab) => new()
    {
        Architecture = "LlamaForCausalLM",
        VocabSize = vocab, HiddenSize = hidden, IntermediateSize = inter, NumHiddenLayers = layers,
        NumAttentionHeads = heads, NumKeyValueHeads = kvHeads, HeadDim = headDim,
        RmsNormEps = 1e-5, MaxPositionEmbeddings = 1 << 21,
        Rope = new RopeConfig(RopeType.Llama3, 500000, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192),
        TieWordEmbeddings = false, QkvBias = false, OutputBias = false, MlpBias = false, TorchDtype = "bfloat16",
        BosTokenId = Math.Min(128000, vocab - 1), EosTokenIds = [Math.Min(128001, vocab - 1)],
    };
}
