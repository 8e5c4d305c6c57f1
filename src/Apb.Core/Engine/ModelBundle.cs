using Apb.Backends;
using Apb.Checkpoints;
using Apb.Model;
using Apb.Tokenization;

namespace Apb.Engine;

/// <summary>
/// A Hugging Face model directory opened for use: config.json, generation_config.json (optional), the memory-mapped
/// weights, and tokenizer.json + tokenizer_config.json. Owns the mapped files; dispose it last.
/// </summary>
public sealed class ModelBundle : IDisposable
{
    public string Directory { get; }
    public ModelConfig Config { get; }
    public GenerationConfig Generation { get; }
    public CheckpointWeights Checkpoint { get; }
    public HfTokenizer Tokenizer { get; }

    ModelBundle(string dir, ModelConfig config, GenerationConfig gen, CheckpointWeights ckpt, HfTokenizer tok)
    {
        Directory = dir; Config = config; Generation = gen; Checkpoint = ckpt; Tokenizer = tok;
    }

    public static ModelBundle Open(string dir)
    {
        if (!System.IO.Directory.Exists(dir))
            throw new ApbException($"{dir}: model directory not found (expected a Hugging Face checkpoint folder with config.json, *.safetensors and tokenizer.json)");
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        var gen = GenerationConfig.Load(Path.Combine(dir, "generation_config.json"));
        string tokPath = Path.Combine(dir, "tokenizer.json");
        if (!File.Exists(tokPath))
            throw new ApbException($"{tokPath}: file not found (the model directory needs the tokenizer.json that came with the checkpoint)");
        string tokConfig = Path.Combine(dir, "tokenizer_config.json");
        var tok = HfTokenizer.Load(tokPath, File.Exists(tokConfig) ? tokConfig : null);
        if (tok.VocabSize > config.VocabSize)
            throw new ApbException($"{tokPath}: the tokenizer has {tok.VocabSize} tokens but config.json vocab_size is {config.VocabSize}: tokenizer and weights do not belong together");
        var ckpt = CheckpointWeights.Open(dir);
        return new ModelBundle(dir, config, gen, ckpt, tok);
    }

    /// <summary>Told how far each weight load is (see <see cref="Model.LoadProgress"/>); null: nobody is told.</summary>
    public Action<LoadProgress>? LoadProgress { get; set; }

    /// <summary>The weights on <paramref name="backend"/>, reporting to <see cref="LoadProgress"/>.</summary>
    public LlamaWeights LoadWeights(IBackend backend) => LlamaWeights.Load(Config, Checkpoint, backend, LoadProgress);

    public LlamaModel LoadModel(IBackend backend) => new(Config, LoadWeights(backend), backend);

    /// <summary>Token ids that end generation: generation_config.json first, then config.json, then the tokenizer's eos.</summary>
    public IReadOnlyList<int> StopTokens
    {
        get
        {
            var s = new List<int>(Generation.EosTokenIds);
            foreach (var e in Config.EosTokenIds) if (!s.Contains(e)) s.Add(e);
            if (Tokenizer.EosTokenId is int t && !s.Contains(t)) s.Add(t);
            return s;
        }
    }

    public void Dispose() => Checkpoint.Dispose();
}
