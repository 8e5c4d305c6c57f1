using System.Text.Json.Nodes;
using Apb.Backends.Cpu;
using Apb.Checkpoints;
using Apb.Model;
using Xunit;

namespace Apb.Tests.Checkpoints;

/// <summary>
/// A config.json and weights that do not belong together must fail at load, naming the tensor, both shapes and the
/// config field to look at, never as garbage logits or a wild read later.
/// </summary>
public class LlamaWeightsTests : IDisposable
{
    readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    /// <summary>A copy of a fixture in the temp dir, its config.json and model.safetensors edited.</summary>
    string Copy(string fixture, Action<JsonObject>? config = null, Func<List<TestTensor>, IEnumerable<TestTensor>>? tensors = null)
    {
        _tmp.CopyFrom(Repo.Fixture(fixture));
        if (config != null) JsonFiles.Edit(_tmp.File("config.json"), config);
        if (tensors != null) SafeTensorsWriter.Rewrite(_tmp.File("model.safetensors"), tensors);
        return _tmp.Path;
    }

    static string Load(string dir, params string[] parts)
    {
        return Expect.Error(() =>
        {
            var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
            using var ckpt = CheckpointWeights.Open(dir);
            LlamaModel.Load(config, ckpt, new CpuBackend());
        }, parts);
    }

    /// <summary>The test fixtures by folder name, and "embedded": the shipped model (models/embedded).</summary>
    public static TheoryData<string> Fixtures => new() { "llama-tiny", "qwen2-tiny", "llama-headdim-sharded", "embedded-random", "embedded" };

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void CommittedFixturesLoad(string name)
    {
        string dir = name == "embedded" ? Repo.EmbeddedModel : Repo.Fixture(name);
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        using var ckpt = CheckpointWeights.Open(dir);
        var w = LlamaWeights.Load(config, ckpt, new CpuBackend());
        Assert.Equal(config.NumHiddenLayers, w.Layers.Length);
        Assert.Equal(config.VocabSize, w.EmbedTokens.Rows);
        Assert.Equal(config.HiddenSize, w.EmbedTokens.Cols);
        Assert.Equal(config.TieWordEmbeddings, ReferenceEquals(w.EmbedTokens, w.LmHead));
        Assert.Equal(config.QkvBias, w.Layers[0].QBias != null);
        Assert.Equal(config.MlpBias, w.Layers[^1].DownBias != null);
    }

    [Fact]
    public void HiddenSizeDiffersFromWeights() =>
        Load(Copy("llama-tiny", c => c["hidden_size"] = 128),
            "model.safetensors", "tensor 'model.embed_tokens.weight' has shape [640, 96]", "implies [640, 128] (vocab_size, hidden_size)");

    [Fact]
    public void VocabSizeDiffersFromWeights() =>
        Load(Copy("qwen2-tiny", c => c["vocab_size"] = 700),
            "tensor 'model.embed_tokens.weight' has shape [640, 80]", "implies [700, 80] (vocab_size, hidden_size)");

    [Fact]
    public void IntermediateSizeDiffersFromWeights() =>
        Load(Copy("llama-tiny", c => c["intermediate_size"] = 256),
            "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [200, 96]", "implies [256, 96] (intermediate_size, hidden_size)");

    [Fact]
    public void KvHeadsDifferFromWeights() =>
        Load(Copy("llama-tiny", c => c["num_key_value_heads"] = 3),
            "tensor 'model.layers.0.self_attn.k_proj.weight' has shape [32, 96]", "implies [48, 96] (num_key_value_heads x head_dim, hidden_size)");

    [Fact]
    public void ShardedCheckpointShapeMismatchNamesTheShard()
    {
        _tmp.CopyFrom(Repo.Fixture("llama-headdim-sharded"));
        JsonFiles.Edit(_tmp.File("config.json"), c => c["head_dim"] = 16);
        Load(_tmp.Path, "model-00001-of-00003.safetensors", "tensor 'model.layers.0.self_attn.q_proj.weight' has shape [128, 64]", "implies [64, 64]");
    }

    [Fact]
    public void WeightStoredAsI32() =>
        Load(Copy("llama-tiny", tensors: ts => ts.Select(t => t.Name == "model.layers.1.self_attn.o_proj.weight" ? t with { DType = "I32" } : t)),
            "tensor 'model.layers.1.self_attn.o_proj.weight' is I32", "weights must be F32, F16 or BF16");

    [Fact]
    public void WeightStoredAsI16InABf16Checkpoint() =>
        Load(Copy("qwen2-tiny", tensors: ts => ts.Select(t => t.Name == "model.norm.weight" ? t with { DType = "I16" } : t)),
            "tensor 'model.norm.weight' is I16", "weights must be F32, F16 or BF16");

    [Fact]
    public void LayerTensorMissing() =>
        Load(Copy("llama-tiny", tensors: ts => ts.Where(t => t.Name != "model.layers.1.mlp.up_proj.weight")),
            "tensor 'model.layers.1.mlp.up_proj.weight' is missing from the checkpoint", "[200, 96]");

    [Fact]
    public void WholeLayerMissing() =>
        Load(Copy("llama-tiny", c => c["num_hidden_layers"] = 4),
            "tensor 'model.layers.3.input_layernorm.weight' is missing", "no layer 3", "num_hidden_layers 4");

    [Fact]
    public void UntiedConfigWithoutLmHead() =>
        Load(Copy("qwen2-tiny", c => c["tie_word_embeddings"] = false),
            "tensor 'lm_head.weight' is missing", "[640, 80]", "tie_word_embeddings false", "set tie_word_embeddings to true");

    [Fact]
    public void TiedConfigWithAnLmHeadInTheCheckpointIsAccepted()
    {
        // transformers ties the output to the embedding whatever lm_head.weight holds; so do we.
        string dir = Copy("llama-tiny", c => c["tie_word_embeddings"] = true);
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        using var ckpt = CheckpointWeights.Open(dir);
        var w = LlamaWeights.Load(config, ckpt, new CpuBackend());
        Assert.Same(w.EmbedTokens, w.LmHead);
    }

    [Fact]
    public void MissingQwen2Bias() =>
        Load(Copy("qwen2-tiny", tensors: ts => ts.Where(t => !t.Name.EndsWith("k_proj.bias"))),
            "tensor 'model.layers.0.self_attn.k_proj.bias' is missing", "[16]", "Qwen2ForCausalLM always has q/k/v biases");

    [Fact]
    public void AttentionBiasInConfigButNotInWeights() =>
        Load(Copy("llama-tiny", c => c["attention_bias"] = true),
            "tensor 'model.layers.0.self_attn.q_proj.bias' is missing", "attention_bias true");

    [Fact]
    public void ConfigWithFewerLayersThanTheWeights() =>
        Load(Copy("llama-tiny", c => c["num_hidden_layers"] = 2),
            "tensor(s) of the checkpoint are not part of LlamaForCausalLM", "'model.layers.2.", "num_hidden_layers (2)");

    [Fact]
    public void BiasesInTheWeightsButNotInTheConfig()
    {
        _tmp.CopyFrom(Repo.Fixture("llama-headdim-sharded"));
        JsonFiles.Edit(_tmp.File("config.json"), c => c["mlp_bias"] = false);
        Load(_tmp.Path, "not part of LlamaForCausalLM", "mlp.down_proj.bias", "mlp_bias");
    }

    [Fact]
    public void RotaryInvFreqBuffersAreIgnored()
    {
        // Older Llama exports saved RoPE's inv_freq buffer per layer; it is recomputed, not read.
        string dir = Copy("llama-tiny", tensors: ts => ts.Append(new TestTensor("model.layers.0.self_attn.rotary_emb.inv_freq", "F32", [8], new byte[32])));
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        using var ckpt = CheckpointWeights.Open(dir);
        Assert.Equal(3, LlamaWeights.Load(config, ckpt, new CpuBackend()).Layers.Length);
    }
}
