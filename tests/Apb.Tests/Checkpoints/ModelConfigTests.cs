using System.Text.Json.Nodes;
using Apb.Checkpoints;
using Xunit;

namespace Apb.Tests.Checkpoints;

/// <summary>config.json in both dialects: what we support parses to the same values, anything else is refused by name.</summary>
public class ModelConfigTests : IDisposable
{
    readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    string LlamaTinyConfig => Path.Combine(Repo.Fixture("llama-tiny"), "config.json");

    /// <summary>llama-tiny's config.json (4.x dialect) edited, written to a temp file; returns its path.</summary>
    string Config(Action<JsonObject> edit, string baseConfig = "")
    {
        var o = JsonFiles.Read(baseConfig == "" ? LlamaTinyConfig : baseConfig);
        edit(o);
        return JsonFiles.Write(_tmp.File($"config-{Guid.NewGuid():N}.json"), o);
    }

    string Error(Action<JsonObject> edit, params string[] parts)
    {
        string p = Config(edit);
        return Expect.Error(() => ModelConfig.Load(p), [p, .. parts]);
    }

    // ---- the committed fixtures ----

    [Fact]
    public void LlamaTinyFixture()
    {
        var c = ModelConfig.Load(LlamaTinyConfig);
        Assert.Equal("LlamaForCausalLM", c.Architecture);
        Assert.Equal((640, 96, 200, 3, 6, 2, 16), (c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim));
        Assert.Equal(1e-5, c.RmsNormEps);
        Assert.Equal(4096, c.MaxPositionEmbeddings);
        Assert.Equal(new RopeConfig(RopeType.Llama3, 10000.0, 8.0, 1.0, 4.0, 64), c.Rope);
        Assert.False(c.TieWordEmbeddings);
        Assert.False(c.QkvBias || c.OutputBias || c.MlpBias);
        Assert.Equal("float32", c.TorchDtype);
        Assert.Equal(3, c.BosTokenId);
        Assert.Equal(new[] { 6 }, c.EosTokenIds);
    }

    [Fact]
    public void Qwen2TinyFixture()
    {
        var c = ModelConfig.Load(Path.Combine(Repo.Fixture("qwen2-tiny"), "config.json"));
        Assert.Equal("Qwen2ForCausalLM", c.Architecture);
        Assert.Equal((640, 80, 160, 2, 5, 1, 16), (c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim));
        Assert.Equal(new RopeConfig(RopeType.Linear, 1_000_000.0, 2.0), c.Rope);
        Assert.True(c.TieWordEmbeddings);
        Assert.True(c.QkvBias);
        Assert.False(c.OutputBias || c.MlpBias);
        Assert.Equal("bfloat16", c.TorchDtype);
        Assert.Null(c.BosTokenId);
        Assert.Equal(new[] { 2 }, c.EosTokenIds);
        Assert.Equal(1e-6, c.RmsNormEps);
    }

    [Fact]
    public void ShardedFixtureWithExplicitHeadDimAndBiases()
    {
        var c = ModelConfig.Load(Path.Combine(Repo.Fixture("llama-headdim-sharded"), "config.json"));
        Assert.Equal((640, 64, 144, 2, 4, 4, 32), (c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim));
        Assert.Equal(128, c.QDim);   // head_dim x heads != hidden_size: the explicit head_dim must win
        Assert.Equal(new RopeConfig(RopeType.Default, 500_000.0), c.Rope);
        Assert.True(c.QkvBias && c.OutputBias && c.MlpBias);
        Assert.Equal("float16", c.TorchDtype);
        Assert.Equal(2048, c.MaxPositionEmbeddings);
    }

    [Fact]
    public void RandomWeightFixtureModel()
    {
        var c = ModelConfig.Load(Path.Combine(Repo.TinyModel, "config.json"));
        Assert.Equal("Qwen2ForCausalLM", c.Architecture);
        Assert.Equal((640, 192, 512, 4, 6, 2, 32), (c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim));
        Assert.Equal(new RopeConfig(RopeType.Default, 1_000_000.0), c.Rope);   // rope_scaling: null
        Assert.True(c.TieWordEmbeddings);
        Assert.Equal("bfloat16", c.TorchDtype);
        Assert.Equal(32768, c.MaxPositionEmbeddings);
    }

    /// <summary>The shipped model (models/embedded): the shape its model card states, 11.02M parameters.</summary>
    [Fact]
    public void EmbeddedModel()
    {
        var c = ModelConfig.Load(Path.Combine(Repo.EmbeddedModel, "config.json"));
        Assert.Equal("LlamaForCausalLM", c.Architecture);
        Assert.Equal((2048, 384, 1024, 6, 6, 2, 64), (c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim));
        // Trained to 16K, read to 128K through YaRN (factor 8; its attention factor 0.1 ln 8 + 1), as its card says.
        Assert.Equal((RopeType.Yarn, 1_000_000.0, 8.0, 16384), (c.Rope.Type, c.Rope.Theta, c.Rope.Factor, c.Rope.OriginalMaxPositions));
        Assert.Equal(0.1 * Math.Log(8) + 1, c.Rope.AttentionFactor, 12);
        Assert.False(c.TieWordEmbeddings);
        Assert.False(c.QkvBias || c.OutputBias || c.MlpBias);
        Assert.Equal("bfloat16", c.TorchDtype);
        Assert.Equal(131072, c.MaxPositionEmbeddings);
        Assert.InRange(c.ParameterCount, 11.01e6, 11.03e6);
    }

    // ---- both dialects mean the same thing ----

    public static TheoryData<string, string, string> EquivalentRope => new()
    {
        // 4.x: rope_theta + rope_scaling               5.x: rope_parameters (rope_theta inside)
        { "llama3", """{"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}""",
                    """{"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}""" },
        { "llama3, old 'type' key", """{"rope_theta": 500000, "rope_scaling": {"type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}}""",
                    """{"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}""" },
        { "linear", """{"rope_theta": 1000000.0, "rope_scaling": {"type": "linear", "factor": 2.0}}""",
                    """{"rope_parameters": {"rope_type": "linear", "rope_theta": 1000000.0, "factor": 2.0}}""" },
        { "default", """{"rope_theta": 10000.0, "rope_scaling": null}""",
                    """{"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}""" },
        { "default, nothing given", """{}""",
                    """{"rope_parameters": {"rope_theta": 10000.0}}""" },
    };

    [Theory]
    [MemberData(nameof(EquivalentRope))]
    public void BothDialectsParseToTheSameRope(string what, string v4, string v5)
    {
        static Action<JsonObject> With(string fields) => o =>
        {
            foreach (var k in new[] { "rope_theta", "rope_scaling", "rope_parameters", "torch_dtype", "dtype" }) o.Remove(k);
            foreach (var (k, v) in JsonNode.Parse(fields)!.AsObject()) o[k] = v?.DeepClone();
        };
        var a = ModelConfig.Load(Config(With(v4)));
        var b = ModelConfig.Load(Config(With(v5)));
        Assert.True(a.Rope == b.Rope, $"{what}: {a.Rope} != {b.Rope}");
        Assert.Equal(a, b with { EosTokenIds = a.EosTokenIds });
    }

    [Theory]
    [InlineData("torch_dtype", "bfloat16", "bfloat16")]
    [InlineData("dtype", "bfloat16", "bfloat16")]
    [InlineData("torch_dtype", "torch.bfloat16", "bfloat16")]
    [InlineData("dtype", "float16", "float16")]
    [InlineData("torch_dtype", "half", "float16")]
    [InlineData("dtype", "float32", "float32")]
    [InlineData("torch_dtype", "float", "float32")]
    public void DtypeInEachSpelling(string field, string value, string expected)
    {
        var c = ModelConfig.Load(Config(o => { o.Remove("torch_dtype"); o[field] = value; }));
        Assert.Equal(expected, c.TorchDtype);
    }

    [Fact]
    public void DtypeAbsentMeansFloat32() =>
        Assert.Equal("float32", ModelConfig.Load(Config(o => o.Remove("torch_dtype"))).TorchDtype);

    [Fact]
    public void ArchitectureFromModelTypeWhenArchitecturesIsMissing()
    {
        Assert.Equal("LlamaForCausalLM", ModelConfig.Load(Config(o => o.Remove("architectures"))).Architecture);
        Assert.Equal("Qwen2ForCausalLM", ModelConfig.Load(Config(o => { o["architectures"] = new JsonArray(); o["model_type"] = "qwen2"; })).Architecture);
    }

    // ---- refused, by name ----

    [Theory]
    [InlineData("GPT2LMHeadModel")]
    [InlineData("Qwen3MoeForCausalLM")]
    [InlineData("MixtralForCausalLM")]
    [InlineData("")]
    public void UnsupportedArchitecture(string arch) =>
        Error(o => o["architectures"] = new JsonArray(arch), $"architecture '{arch}' is not supported", "LlamaForCausalLM, Qwen2ForCausalLM");

    [Fact]
    public void UnsupportedModelTypeWithoutArchitectures() =>
        Error(o => { o.Remove("architectures"); o["model_type"] = "gemma2"; }, "model_type 'gemma2'", "LlamaForCausalLM, Qwen2ForCausalLM");

    [Theory]
    [InlineData("5", "'architectures' should be a list")]
    [InlineData("\"LlamaForCausalLM\"", "'architectures' should be a list")]
    [InlineData("[5]", "architectures[0] should be a class name")]
    [InlineData("[null]", "architectures[0] should be a class name")]
    public void ArchitecturesOfWrongType(string json, string message) =>
        Error(o => o["architectures"] = JsonNode.Parse(json), message);

    [Theory]
    [InlineData("rope_scaling", "rope_type", "longrope")]
    [InlineData("rope_scaling", "type", "su")]
    [InlineData("rope_parameters", "rope_type", "longrope")]
    [InlineData("rope_parameters", "rope_type", "mrope")]
    public void UnsupportedRopeType(string where, string key, string type) =>
        Error(o =>
        {
            o.Remove("rope_scaling");
            o[where] = new JsonObject { [key] = type, ["factor"] = 4.0, ["original_max_position_embeddings"] = 4096 };
        }, $"{where}.{key} is '{type}'", "not supported", "supported: default, linear, llama3, dynamic, yarn");

    [Theory]
    [InlineData("{\"rope_type\": 5}", "'rope_scaling.rope_type' should be a string but is 5")]
    [InlineData("\"llama3\"", "'rope_scaling' should be an object")]
    [InlineData("{\"rope_type\": \"linear\"}", "rope_scaling of type linear needs 'factor'")]
    [InlineData("{\"rope_type\": \"linear\", \"factor\": 0}", "'rope_scaling.factor' must be positive but is 0")]
    [InlineData("{\"rope_type\": \"linear\", \"factor\": \"2\"}", "'rope_scaling.factor' should be a number but is \"2\"")]
    [InlineData("{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, \"high_freq_factor\": 4}", "needs 'original_max_position_embeddings'")]
    [InlineData("{\"rope_type\": \"llama3\", \"factor\": 8, \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}", "needs 'low_freq_factor'")]
    [InlineData("{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4, \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}", "high_freq_factor 4 must be greater than low_freq_factor 4")]
    [InlineData("{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192.5}", "'rope_scaling.original_max_position_embeddings' should be an integer")]
    [InlineData("{\"rope_type\": \"default\", \"rope_theta\": -1}", "'rope_scaling.rope_theta' must be positive")]
    [InlineData("{\"full_attention\": {\"rope_type\": \"default\", \"rope_theta\": 10000}}", "per-layer-type parameters ('full_attention'")]
    public void BadRopeScaling(string json, string message) =>
        Error(o => o["rope_scaling"] = JsonNode.Parse(json), message);

    [Theory]
    [InlineData("gelu")]
    [InlineData("gelu_pytorch_tanh")]
    [InlineData("relu")]
    public void HiddenActOtherThanSilu(string act) =>
        Error(o => o["hidden_act"] = act, $"hidden_act is '{act}'", "only 'silu'");

    [Theory]
    [InlineData(6, 4)]
    [InlineData(6, 12)]
    public void HeadsNotDivisibleByKvHeads(int heads, int kv) =>
        Error(o => { o["num_attention_heads"] = heads; o["num_key_value_heads"] = kv; },
            $"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}");

    [Theory]
    [InlineData("num_key_value_heads", 0)]
    [InlineData("num_key_value_heads", -2)]
    [InlineData("head_dim", 0)]
    [InlineData("head_dim", -16)]
    [InlineData("hidden_size", 0)]
    [InlineData("vocab_size", -1)]
    [InlineData("max_position_embeddings", 0)]
    public void NonPositiveSize(string field, int value) =>
        Error(o => o[field] = value, $"'{field}' must be positive but is {value}");

    [Fact]
    public void NonPositiveRmsNormEps() => Error(o => o["rms_norm_eps"] = 0.0, "'rms_norm_eps' must be positive");

    [Fact]
    public void OddExplicitHeadDim() => Error(o => o["head_dim"] = 15, "head_dim 15 is odd");

    [Fact]
    public void OddDerivedHeadDim() =>
        Error(o => { o.Remove("head_dim"); o["hidden_size"] = 90; o["num_attention_heads"] = 6; o["num_key_value_heads"] = 6; }, "head_dim 15 is odd");

    [Fact]
    public void HiddenNotDivisibleByHeadsWithoutHeadDim() =>
        Error(o => { o.Remove("head_dim"); o["hidden_size"] = 100; }, "hidden_size 100 is not divisible by num_attention_heads 6");

    [Fact]
    public void HeadsTimesHeadDimOverflows() =>
        Error(o => { o["num_attention_heads"] = 1 << 20; o["num_key_value_heads"] = 1; o["head_dim"] = 1 << 12; }, "too large");

    [Theory]
    [InlineData("hidden_size")]
    [InlineData("vocab_size")]
    [InlineData("intermediate_size")]
    [InlineData("num_hidden_layers")]
    [InlineData("num_attention_heads")]
    public void MissingRequiredField(string field)
    {
        Error(o => o.Remove(field), $"required field '{field}' is missing");
        Error(o => o[field] = null, $"required field '{field}' is missing");
    }

    [Theory]
    [InlineData("hidden_size", "\"96\"", "'hidden_size' should be an integer but is \"96\"")]
    [InlineData("hidden_size", "96.5", "'hidden_size' should be an integer but is 96.5")]
    [InlineData("hidden_size", "1e12", "'hidden_size' should be an integer but is 1e12")]
    [InlineData("num_hidden_layers", "[3]", "'num_hidden_layers' should be an integer")]
    [InlineData("rms_norm_eps", "\"1e-5\"", "'rms_norm_eps' should be a number but is \"1e-5\"")]
    [InlineData("rms_norm_eps", "1e999", "'rms_norm_eps' should be a number but is 1e999")]
    [InlineData("rope_theta", "true", "'rope_theta' should be a number")]
    [InlineData("tie_word_embeddings", "\"false\"", "'tie_word_embeddings' should be true or false but is \"false\"")]
    [InlineData("attention_bias", "0", "'attention_bias' should be true or false")]
    [InlineData("hidden_act", "5", "'hidden_act' should be a string but is 5")]
    [InlineData("torch_dtype", "{}", "'torch_dtype' should be a string")]
    [InlineData("eos_token_id", "\"6\"", "'eos_token_id' should be an integer but is \"6\"")]
    [InlineData("eos_token_id", "[6, null]", "'eos_token_id' should be an integer but is null")]
    [InlineData("bos_token_id", "3.0", "'bos_token_id' should be an integer")]
    [InlineData("layer_types", "\"full_attention\"", "'layer_types' should be a list of strings")]
    public void FieldOfWrongJsonType(string field, string json, string message) =>
        Error(o => o[field] = JsonNode.Parse(json), message);

    [Fact]
    public void SlidingWindowOnForQwen2()
    {
        string p = Config(o => o["use_sliding_window"] = true, Path.Combine(Repo.Fixture("qwen2-tiny"), "config.json"));
        Expect.Error(() => ModelConfig.Load(p), p, "use_sliding_window is true", "not supported", "set it to false");
    }

    [Fact]
    public void SlidingAttentionInLayerTypes()
    {
        string p = Config(o => o["layer_types"] = new JsonArray("full_attention", "sliding_attention"), Path.Combine(Repo.Fixture("qwen2-tiny"), "config.json"));
        Expect.Error(() => ModelConfig.Load(p), p, "layer_types[1] is 'sliding_attention'", "only 'full_attention'");
    }

    [Theory]
    [InlineData("{\"hidden_size\": ", "not valid JSON")]
    [InlineData("[1, 2]", "expected a JSON object of model settings but found Array")]
    [InlineData("null", "found Null")]
    [InlineData("{\"architectures\": [\"Llama\\ud800\"]}", "not valid Unicode")]
    public void NotAConfigObject(string text, string message)
    {
        string p = _tmp.File("config.json");
        File.WriteAllText(p, text);
        Expect.Error(() => ModelConfig.Load(p), p, message);
    }

    // ---- values of the right type that describe no model (issue #16) ----

    [Fact]
    public void LayerCountPastAnyModel() =>
        // Was an OutOfMemoryException (exit 2): the per-layer table was sized before the weights were checked.
        Error(o => o["num_hidden_layers"] = int.MaxValue, "num_hidden_layers is 2147483647", $"at most {ModelConfig.MaxLayers}");

    [Theory]
    [InlineData(1e-300)]
    [InlineData(0.5)]
    [InlineData(1.0)]
    [InlineData(1e39)]
    public void RopeThetaThatGivesNoFrequencies(double theta) =>
        // theta <= 1e-300 underflows to 0 in fp32 and made every logit NaN, without a word.
        Error(o => o["rope_theta"] = theta, "'rope_theta' is", "greater than 1");

    [Fact]
    public void RopeThetaInsideRopeParameters() =>
        Error(o => { o.Remove("rope_scaling"); o["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 0.001 }; },
            "'rope_parameters.rope_theta' is 0.001", "greater than 1");

    [Theory]
    [InlineData("eos_token_id", "-1", "'eos_token_id' holds token id -1")]
    [InlineData("eos_token_id", "[6, -5]", "'eos_token_id' holds token id -5")]
    [InlineData("eos_token_id", "640", "'eos_token_id' holds token id 640, outside the vocabulary (0..639)")]
    [InlineData("bos_token_id", "-3", "'bos_token_id' holds token id -3")]
    public void TokenIdOutsideTheVocabulary(string field, string json, string message) =>
        Error(o => o[field] = JsonNode.Parse(json), message);

    [Fact]
    public void MissingConfigFile() =>
        Expect.Error(() => ModelConfig.Load(_tmp.File("config.json")), "config.json", "file not found");
}
