using System.Text.Json.Nodes;
using Apb.Checkpoints;
using Xunit;

namespace Apb.Tests.Checkpoints;

/// <summary>
/// config.json of the families beyond Llama / Qwen2 (Qwen3, Mistral, Yi and Llama 3.2 are read as transformers reads
/// them) and the long-context rope types (dynamic NTK, YaRN): what each field means, and what is refused by name.
/// </summary>
public class ArchitectureConfigTests : IDisposable
{
    readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    static string LlamaTiny => Path.Combine(Repo.Fixture("llama-tiny"), "config.json");
    static string Qwen2Tiny => Path.Combine(Repo.Fixture("qwen2-tiny"), "config.json");

    ModelConfig Load(string baseConfig, Action<JsonObject> edit) => ModelConfig.Load(Write(baseConfig, edit));

    string Write(string baseConfig, Action<JsonObject> edit)
    {
        var o = JsonFiles.Read(baseConfig);
        edit(o);
        return JsonFiles.Write(_tmp.File($"config-{Guid.NewGuid():N}.json"), o);
    }

    void Error(string baseConfig, Action<JsonObject> edit, params string[] parts)
    {
        string p = Write(baseConfig, edit);
        Expect.Error(() => ModelConfig.Load(p), [p, .. parts]);
    }

    static Action<JsonObject> Arch(string arch, Action<JsonObject>? more = null) => o =>
    {
        o["architectures"] = new JsonArray(arch);
        more?.Invoke(o);
    };

    // ---- Qwen3: Qwen2's shape with per-head q/k norms; biases follow attention_bias, as in transformers ----

    [Fact]
    public void Qwen3HasQkNormsAndBiasesOnlyWithAttentionBias()
    {
        var c = Load(Qwen2Tiny, Arch("Qwen3ForCausalLM", o => o["attention_bias"] = false));
        Assert.True(c.QkNorm);
        Assert.False(c.QkvBias || c.OutputBias || c.MlpBias);
        Assert.Null(c.SlidingWindow);

        var biased = Load(Qwen2Tiny, Arch("Qwen3ForCausalLM", o => o["attention_bias"] = true));
        Assert.True(biased.QkvBias && biased.OutputBias);
        Assert.False(biased.MlpBias);
        // q_norm and k_norm: head_dim weights each per layer.
        Assert.Equal(2L * c.NumHiddenLayers * c.HeadDim, c.ParameterCount - (c with { QkNorm = false }).ParameterCount);
    }

    [Fact]
    public void Qwen3SlidingWindowIsRefused() =>
        Error(Qwen2Tiny, Arch("Qwen3ForCausalLM", o => o["use_sliding_window"] = true), "use_sliding_window is true", "Qwen3ForCausalLM", "set it to false");

    [Theory]
    [InlineData("qwen3", "Qwen3ForCausalLM")]
    [InlineData("mistral", "MistralForCausalLM")]
    public void ArchitectureFromModelType(string modelType, string arch) =>
        Assert.Equal(arch, Load(LlamaTiny, o => { o.Remove("architectures"); o["model_type"] = modelType; }).Architecture);

    // ---- Mistral: Llama without biases, with a sliding window ----

    [Fact]
    public void MistralReadsItsSlidingWindow()
    {
        var c = Load(LlamaTiny, Arch("MistralForCausalLM", o => o["sliding_window"] = 24));
        Assert.Equal(24, c.SlidingWindow);
        Assert.False(c.QkNorm || c.QkvBias || c.OutputBias || c.MlpBias);
    }

    [Fact]
    public void MistralWithoutWindowOrWithOneCoveringEveryPositionIsFullCausal()
    {
        Assert.Null(Load(LlamaTiny, Arch("MistralForCausalLM", o => o["sliding_window"] = null)).SlidingWindow);
        Assert.Null(Load(LlamaTiny, Arch("MistralForCausalLM", o => o.Remove("sliding_window"))).SlidingWindow);
        // max_position_embeddings is 4096: prompts longer than that are refused, so such a window never hides a key.
        Assert.Null(Load(LlamaTiny, Arch("MistralForCausalLM", o => o["sliding_window"] = 4096)).SlidingWindow);
        Assert.Equal(4095, Load(LlamaTiny, Arch("MistralForCausalLM", o => o["sliding_window"] = 4095)).SlidingWindow);
    }

    [Fact]
    public void MistralIgnoresAttentionAndMlpBiasFlags()
    {
        // transformers builds MistralAttention and MistralMLP with bias=False whatever the config says.
        var c = Load(LlamaTiny, Arch("MistralForCausalLM", o => { o["attention_bias"] = true; o["mlp_bias"] = true; }));
        Assert.False(c.QkvBias || c.OutputBias || c.MlpBias);
    }

    [Fact]
    public void LlamaIgnoresASlidingWindowField()
    {
        // Some converted Llama checkpoints carry sliding_window; transformers' Llama never reads it.
        Assert.Null(Load(LlamaTiny, o => o["sliding_window"] = 16).SlidingWindow);
    }

    [Theory]
    [InlineData("sliding_attention")]
    [InlineData("full_attention")]
    public void MistralAcceptsUniformLayerTypes(string type)
    {
        var c = Load(LlamaTiny, Arch("MistralForCausalLM", o => { o["sliding_window"] = 24; o["layer_types"] = new JsonArray(type, type, type); }));
        Assert.Equal(24, c.SlidingWindow);
    }

    [Fact]
    public void MistralRefusesMixedLayerTypes() =>
        Error(LlamaTiny, Arch("MistralForCausalLM", o => { o["sliding_window"] = 24; o["layer_types"] = new JsonArray("full_attention", "sliding_attention", "full_attention"); }),
            "layer_types mixes 'full_attention' and 'sliding_attention'", "MistralForCausalLM");

    [Theory]
    [InlineData("0")]
    [InlineData("-4")]
    [InlineData("\"4096\"")]
    public void MistralBadSlidingWindow(string json) =>
        Error(LlamaTiny, Arch("MistralForCausalLM", o => o["sliding_window"] = JsonNode.Parse(json)), "'sliding_window'");

    // ---- rope: dynamic NTK and YaRN, in both dialects ----

    static Action<JsonObject> Rope(string fields) => o =>
    {
        foreach (var k in new[] { "rope_theta", "rope_scaling", "rope_parameters" }) o.Remove(k);
        foreach (var (k, v) in JsonNode.Parse(fields)!.AsObject()) o[k] = v?.DeepClone();
    };

    [Fact]
    public void DynamicScalesFromMaxPositionEmbeddings()
    {
        var v4 = Load(LlamaTiny, Rope("""{"rope_theta": 10000.0, "rope_scaling": {"type": "dynamic", "factor": 2.0}}"""));
        var v5 = Load(LlamaTiny, Rope("""{"rope_parameters": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}}"""));
        Assert.Equal(new RopeConfig(RopeType.Dynamic, 10000.0, 2.0, OriginalMaxPositions: 4096), v4.Rope);
        Assert.Equal(v4.Rope, v5.Rope);
    }

    [Fact]
    public void DynamicNeedsAFactor() =>
        Error(LlamaTiny, Rope("""{"rope_scaling": {"rope_type": "dynamic"}}"""), "rope_scaling of type dynamic needs 'factor'");

    [Fact]
    public void YarnAsQwenShipsIt()
    {
        // Qwen2.5 / Qwen3's documented long-context setting, 4.x dialect with the old "type" key.
        var c = Load(LlamaTiny, Rope("""{"rope_theta": 1000000.0, "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}"""));
        Assert.Equal(RopeType.Yarn, c.Rope.Type);
        Assert.Equal((4.0, 32768), (c.Rope.Factor, c.Rope.OriginalMaxPositions));
        Assert.Equal(0.1 * Math.Log(4.0) + 1.0, c.Rope.AttentionFactor, 12);
        Assert.Equal((32.0, 1.0, true), (c.Rope.BetaFast, c.Rope.BetaSlow, c.Rope.Truncate));
        var v5 = Load(LlamaTiny, Rope("""{"rope_parameters": {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0, "original_max_position_embeddings": 32768}}"""));
        Assert.Equal(c.Rope, v5.Rope);
    }

    [Fact]
    public void YarnOptionalFields()
    {
        var c = Load(LlamaTiny, Rope("""{"rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0, "original_max_position_embeddings": 512, "attention_factor": 1.5, "beta_fast": 16, "beta_slow": 2, "truncate": false}}"""));
        Assert.Equal((1.5, 16.0, 2.0, false), (c.Rope.AttentionFactor, c.Rope.BetaFast, c.Rope.BetaSlow, c.Rope.Truncate));

        // DeepSeek's mscale / mscale_all_dim: the attention factor is the ratio of the two magnitude scalings.
        var d = Load(LlamaTiny, Rope("""{"rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "original_max_position_embeddings": 4096, "mscale": 0.707, "mscale_all_dim": 0.707}}"""));
        Assert.Equal(1.0, d.Rope.AttentionFactor, 12);
        var e = Load(LlamaTiny, Rope("""{"rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "original_max_position_embeddings": 4096, "mscale": 1.0, "mscale_all_dim": 0.5}}"""));
        Assert.Equal((0.1 * Math.Log(40) + 1) / (0.05 * Math.Log(40) + 1), e.Rope.AttentionFactor, 12);
    }

    [Fact]
    public void YarnWithoutFactorTakesTheRatioOfLengths()
    {
        var c = Load(LlamaTiny, Rope("""{"rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "original_max_position_embeddings": 1024}}"""));
        Assert.Equal(4.0, c.Rope.Factor); // max_position_embeddings 4096 / 1024
        Assert.Equal(1024, c.Rope.OriginalMaxPositions);
    }

    [Fact]
    public void YarnWithoutOriginalLengthUsesMaxPositionEmbeddings()
    {
        var c = Load(LlamaTiny, Rope("""{"rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 2.0}}"""));
        Assert.Equal((2.0, 4096), (c.Rope.Factor, c.Rope.OriginalMaxPositions));
    }

    [Theory]
    [InlineData("""{"rope_type": "yarn"}""", "rope_scaling of type yarn needs 'factor'")]
    [InlineData("""{"rope_type": "yarn", "factor": 4, "truncate": "yes"}""", "rope_scaling.truncate should be true or false")]
    [InlineData("""{"rope_type": "yarn", "factor": 4, "attention_factor": -1}""", "'rope_scaling.attention_factor' must be positive")]
    [InlineData("""{"rope_type": "yarn", "factor": 4, "original_max_position_embeddings": 0}""", "'rope_scaling.original_max_position_embeddings' must be positive")]
    public void BadYarn(string json, string message) =>
        Error(LlamaTiny, o => o["rope_scaling"] = JsonNode.Parse(json), message);

    [Theory]
    [InlineData("""{"partial_rotary_factor": 0.5}""", "partial_rotary_factor is 0.5")]
    [InlineData("""{"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25}}""", "rope_parameters.partial_rotary_factor is 0.25")]
    public void PartialRotaryIsRefused(string fields, string message) =>
        Error(LlamaTiny, o => { foreach (var (k, v) in JsonNode.Parse(fields)!.AsObject()) { o.Remove(k); o[k] = v?.DeepClone(); } if (fields.Contains("rope_parameters")) o.Remove("rope_scaling"); },
            message, "only full rotary embeddings");

    [Fact]
    public void FullPartialRotaryFactorIsAccepted() =>
        Assert.Equal(RopeType.Llama3, Load(LlamaTiny, o => o["partial_rotary_factor"] = 1.0).Rope.Type);
}
