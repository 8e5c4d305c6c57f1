using System.Runtime.CompilerServices;
using Apb.Backends;
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

/// <summary>
/// Random weights for a <see cref="ModelConfig"/>: every matrix uniform in [-s, s] with s = 0.02 x sqrt(3) (standard
/// deviation 0.02, Hugging Face's initializer_range), norms 1, biases 0.02-uniform. Each tensor is stream i of a
/// counter-based hash, so values depend only on (seed, tensor, element): a backend makes each tensor with
/// <see cref="IBackend.LoadRandom"/> (the CUDA backend on the device with a kernel, no host copy of the model; others
/// from host bf16 buffers, <see cref="LoadOnHost"/>), and all hold the same bits.
/// </summary>
public static unsafe class RandomWeights
{
    public const float Scale = 0.02f * 1.7320508f;

    // Host buffers live as long as the weights that point into them (a host backend's weight wraps the memory it gets).
    static readonly ConditionalWeakTable<IWeight, ushort[]> HostBuffers = new();

    /// <summary>Every tensor of <see cref="LlamaWeights.Build"/>'s table, in its order, as stream 0, 1, 2, ... of the seed.</summary>
    public static LlamaWeights Create(ModelConfig c, IBackend backend, ulong seed = 1)
    {
        ulong stream = 0;
        var weights = LlamaWeights.Build(c, t =>
        {
            bool norm = t.Role == LlamaWeights.Role.Norm;
            int rows = (int)t.Shape[0], cols = t.Shape.Length > 1 ? (int)t.Shape[1] : 1;
            return backend.LoadRandom(t.Name, rows, cols, Key(seed, stream++), norm ? 0f : Scale, norm ? 1f : 0f);
        });
        backend.Synchronize();
        return weights;
    }

    /// <summary><see cref="IBackend.LoadRandom"/> through the host: bf16 values in a pinned buffer that lives as long as the weight.</summary>
    public static IWeight LoadOnHost(IBackend backend, string name, int rows, int cols, ulong key, float scale, float offset)
    {
        var data = GC.AllocateUninitializedArray<ushort>(checked(rows * cols), pinned: true);
        for (int i = 0; i < data.Length; i++) data[i] = DTypes.FloatToBF16(Value(key, i, scale, offset));
        IWeight w;
        fixed (ushort* p = data)
            w = backend.Load(new WeightView(name, DType.BF16, rows == 1 || cols == 1 ? [(long)rows * cols] : [rows, cols], (byte*)p));
        HostBuffers.Add(w, data);
        return w;
    }

    /// <summary>The hash key of one tensor (stream) of a seed.</summary>
    public static ulong Key(ulong seed, ulong stream) => Mix(seed ^ Mix(stream));

    /// <summary>Element i of the tensor with this key: offset + (2u - 1) x scale, u = 24 hash bits / 2^24 (what random.cu computes).</summary>
    public static float Value(ulong key, long i, float scale, float offset)
    {
        ulong hsh = Mix(key + (ulong)i);
        float u = (float)(uint)(hsh >> 40) * 5.9604644775390625e-8f;
        float centered = (u + u) - 1f;
        float scaled = centered * scale;
        return offset + scaled;
    }

    static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
