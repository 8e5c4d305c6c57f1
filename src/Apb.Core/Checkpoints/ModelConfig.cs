using System.Text.Json;

namespace Apb.Checkpoints;

public enum RopeType { Default, Llama3, Linear, Dynamic, Yarn }

/// <summary>
/// Rotary embedding parameters, already resolved from either config dialect. OriginalMaxPositions is the length the
/// frequencies were trained at: llama3's and yarn's original_max_position_embeddings, and for dynamic NTK
/// max_position_embeddings (past which transformers raises the base). AttentionFactor is YaRN's cos/sin multiplier
/// (resolved from attention_factor, or mscale / mscale_all_dim, or the factor); BetaFast, BetaSlow and Truncate are
/// YaRN's correction range.
/// </summary>
public sealed record RopeConfig(RopeType Type, double Theta, double Factor = 1, double LowFreqFactor = 1,
    double HighFreqFactor = 4, int OriginalMaxPositions = 8192,
    double AttentionFactor = 1, double BetaFast = 32, double BetaSlow = 1, bool Truncate = true);

/// <summary>
/// The model's shape, read from config.json. Names follow the Hugging Face fields they come from. Two dialects exist:
/// published checkpoints (transformers 4.x) write rope_theta + rope_scaling + torch_dtype; transformers 5.x writes
/// rope_parameters (rope_theta inside) + dtype. Both are read; anything we cannot compute exactly is refused by name.
/// </summary>
public sealed record ModelConfig
{
    public required string Architecture { get; init; }      // LlamaForCausalLM | Qwen2ForCausalLM | Qwen3ForCausalLM | MistralForCausalLM
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    public required int HeadDim { get; init; }
    public required double RmsNormEps { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public required RopeConfig Rope { get; init; }
    public required bool TieWordEmbeddings { get; init; }
    /// <summary>Bias on q/k/v projections (Qwen2 always; Llama when attention_bias).</summary>
    public required bool QkvBias { get; init; }
    /// <summary>Bias on o_proj (Llama attention_bias only).</summary>
    public required bool OutputBias { get; init; }
    public required bool MlpBias { get; init; }
    public required string TorchDtype { get; init; }
    public int? BosTokenId { get; init; }
    public IReadOnlyList<int> EosTokenIds { get; init; } = Array.Empty<int>();

    /// <summary>Per-head RMSNorm of q and k over head_dim before RoPE (Qwen3: self_attn.q_norm / k_norm).</summary>
    public bool QkNorm { get; init; }

    /// <summary>
    /// Mistral's sliding window: each token attends to the sliding_window tokens ending at itself (null: full causal).
    /// Full attention honours it exactly; the sequence-parallel strategies refuse it (StrategyOptions.Validate).
    /// </summary>
    public int? SlidingWindow { get; init; }

    /// <summary>
    /// More layers than any model has (the largest published ones have ~130): a bound that keeps a corrupt count from
    /// sizing per-layer tables before the weights are checked against it.
    /// </summary>
    public const int MaxLayers = 4096;

    public int GroupSize => NumAttentionHeads / NumKeyValueHeads;
    public int QDim => NumAttentionHeads * HeadDim;
    public int KvDim => NumKeyValueHeads * HeadDim;

    public long ParameterCount
    {
        get
        {
            long h = HiddenSize, layer = h * QDim + 2 * h * KvDim + QDim * h + 3 * h * IntermediateSize + 2 * h;
            if (QkvBias) layer += QDim + 2 * KvDim;
            if (QkNorm) layer += 2L * HeadDim;
            long embed = (long)VocabSize * h;
            return NumHiddenLayers * layer + embed * (TieWordEmbeddings ? 1 : 2) + h;
        }
    }

    public static ModelConfig Load(string path)
    {
        if (!File.Exists(path))
            throw new ApbException($"{path}: file not found (a Hugging Face model directory must contain config.json)");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(InputFile.ReadJsonBytes(path, 1L << 20, "model config")); }
        catch (JsonException e) { throw new ApbException($"{path}: not valid JSON ({e.Message})"); }
        using var _ = doc;
        return Parse(doc.RootElement, path);
    }

    public static ModelConfig Parse(JsonElement root, string path = "config.json")
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new ApbException($"{path}: expected a JSON object of model settings but found {root.ValueKind}");
        try { return ParseObject(root, path); }
        catch (InvalidOperationException e)
        {
            // A string escape that is not valid UTF-16 (a lone surrogate) cannot become a .NET string.
            throw new ApbException($"{path}: a string value is not valid Unicode ({e.Message})");
        }
    }

    static ModelConfig ParseObject(JsonElement root, string path)
    {
        var r = new Reader(root, path);
        string arch = r.Architecture();
        bool qwen = arch == "Qwen2ForCausalLM";
        bool qwen3 = arch == "Qwen3ForCausalLM", mistral = arch == "MistralForCausalLM";
        string act = r.String("hidden_act") ?? "silu";
        if (act != "silu")
            throw new ApbException($"{path}: hidden_act is '{act}', only 'silu' (SwiGLU) is supported for {arch}");
        if ((qwen || qwen3) && r.Bool("use_sliding_window") == true)
            throw new ApbException($"{path}: use_sliding_window is true; sliding-window attention is not supported for {arch} (set it to false: Qwen2.5 and Qwen3 checkpoints ship with it off)");
        int maxPositions = r.PositiveInt("max_position_embeddings") ?? 2048;
        int? slidingWindow = mistral ? r.SlidingWindow(maxPositions) : null;
        var layerTypes = r.StringList("layer_types");
        // Mistral's model reads sliding_window alone and applies it to every layer: a uniform list says nothing more.
        if (mistral && layerTypes.Distinct().Skip(1).Any())
            throw new ApbException($"{path}: layer_types mixes {string.Join(" and ", layerTypes.Distinct().Select(t => $"'{t}'"))}; {arch} applies sliding_window to every layer, per-layer attention types are not supported");
        for (int i = 0; i < layerTypes.Count && !mistral; i++)
            if (layerTypes[i] != "full_attention")
                throw new ApbException($"{path}: layer_types[{i}] is '{layerTypes[i]}'; only 'full_attention' is supported (sliding-window attention is not)");

        int hidden = r.RequiredInt("hidden_size");
        int heads = r.RequiredInt("num_attention_heads");
        int kvHeads = r.PositiveInt("num_key_value_heads") ?? heads;
        if (heads % kvHeads != 0)
            throw new ApbException($"{path}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kvHeads}");
        int? headDim = r.PositiveInt("head_dim");
        if (headDim is null && hidden % heads != 0)
            throw new ApbException($"{path}: hidden_size {hidden} is not divisible by num_attention_heads {heads} and head_dim is not given");
        int hd = headDim ?? hidden / heads;
        if (hd % 2 != 0)
            throw new ApbException($"{path}: head_dim {hd} is odd; rotary embeddings need an even head dimension");
        if ((long)heads * hd > int.MaxValue)
            throw new ApbException($"{path}: num_attention_heads {heads} x head_dim {hd} is too large (over {int.MaxValue})");
        bool attnBias = r.Bool("attention_bias") ?? false;
        int layers = r.RequiredInt("num_hidden_layers");
        if (layers > MaxLayers)
            throw new ApbException($"{path}: num_hidden_layers is {layers}, more than any model has (at most {MaxLayers} are read): the file is corrupt or from another model");
        int vocab = r.RequiredInt("vocab_size");

        return new ModelConfig
        {
            Architecture = arch,
            VocabSize = vocab,
            HiddenSize = hidden,
            IntermediateSize = r.RequiredInt("intermediate_size"),
            NumHiddenLayers = layers,
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = hd,
            RmsNormEps = r.PositiveDouble("rms_norm_eps") ?? 1e-6,
            MaxPositionEmbeddings = maxPositions,
            Rope = r.Rope(maxPositions),
            TieWordEmbeddings = r.Bool("tie_word_embeddings") ?? false,
            // As transformers builds each: Qwen2 always has q/k/v biases; Qwen3 and Llama follow attention_bias (o_proj
            // too); Mistral has none; only Llama reads mlp_bias.
            QkvBias = qwen || (attnBias && !mistral),
            OutputBias = attnBias && !qwen && !mistral,
            MlpBias = !qwen && !qwen3 && !mistral && (r.Bool("mlp_bias") ?? false),
            TorchDtype = NormalizeDtype(r.String("torch_dtype") ?? r.String("dtype")) ?? "float32",
            BosTokenId = r.TokenId(r.Int("bos_token_id"), "bos_token_id", vocab),
            EosTokenIds = r.IntOrList("eos_token_id").Select(id => r.TokenId(id, "eos_token_id", vocab)!.Value).ToArray(),
            QkNorm = qwen3,
            SlidingWindow = slidingWindow,
        };
    }

    // torch_dtype (4.x) and dtype (5.x) hold a torch dtype name; older writers spell it "torch.bfloat16" or use an alias.
    static string? NormalizeDtype(string? s)
    {
        if (s is null) return null;
        if (s.StartsWith("torch.", StringComparison.Ordinal)) s = s["torch.".Length..];
        return s switch { "float" => "float32", "half" => "float16", _ => s };
    }

    /// <summary>Reads fields with errors that name the field, the expected type and what was found.</summary>
    sealed class Reader(JsonElement root, string path)
    {
        static readonly string[] Supported = ["LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM"];
        static readonly string[] SupportedRope = ["default", "linear", "llama3", "dynamic", "yarn"];

        public string Architecture()
        {
            var a = Get("architectures");
            if (a is { ValueKind: not JsonValueKind.Array })
                throw new ApbException($"{path}: 'architectures' should be a list of class names but is {a.Value.GetRawText()}");
            if (a is null || a.Value.GetArrayLength() == 0)
            {
                string? mt = String("model_type");
                if (mt == "llama") return "LlamaForCausalLM";
                if (mt == "qwen2") return "Qwen2ForCausalLM";
                if (mt == "qwen3") return "Qwen3ForCausalLM";
                if (mt == "mistral") return "MistralForCausalLM";
                throw new ApbException($"{path}: no 'architectures' list and model_type '{mt ?? "(none)"}'; supported: {string.Join(", ", Supported)}");
            }
            var first = a.Value[0];
            if (first.ValueKind != JsonValueKind.String)
                throw new ApbException($"{path}: architectures[0] should be a class name such as \"LlamaForCausalLM\" but is {first.GetRawText()}");
            string arch = first.GetString()!;
            if (!Supported.Contains(arch))
                throw new ApbException($"{path}: architecture '{arch}' is not supported; supported: {string.Join(", ", Supported)}");
            return arch;
        }

        JsonElement? Get(string name) =>
            root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

        public string? String(string name) => ToString(Get(name), name);

        string? ToString(JsonElement? v, string name)
        {
            if (v is null) return null;
            if (v.Value.ValueKind != JsonValueKind.String)
                throw new ApbException($"{path}: '{name}' should be a string but is {v.Value.GetRawText()}");
            return v.Value.GetString();
        }

        public IReadOnlyList<string> StringList(string name)
        {
            var v = Get(name);
            if (v is null) return Array.Empty<string>();
            if (v.Value.ValueKind != JsonValueKind.Array)
                throw new ApbException($"{path}: '{name}' should be a list of strings but is {v.Value.GetRawText()}");
            return v.Value.EnumerateArray().Select((e, i) => ToString(e, $"{name}[{i}]")!).ToArray();
        }

        public int? Int(string name) => ToInt(Get(name), name);

        int? ToInt(JsonElement? v, string name)
        {
            if (v is null) return null;
            if (v.Value.ValueKind != JsonValueKind.Number || !v.Value.TryGetInt32(out int i))
                throw new ApbException($"{path}: '{name}' should be an integer but is {v.Value.GetRawText()}");
            return i;
        }

        public int RequiredInt(string name) =>
            PositiveInt(name) ?? throw new ApbException($"{path}: required field '{name}' is missing (expected a positive integer)");

        public int? PositiveInt(string name) => Positive(ToInt(Get(name), name), name);

        int? Positive(int? v, string name)
        {
            if (v <= 0) throw new ApbException($"{path}: '{name}' must be positive but is {v}");
            return v;
        }

        public double? PositiveDouble(string name) => Positive(ToDouble(Get(name), name), name);

        double? Positive(double? v, string name)
        {
            if (v <= 0) throw new ApbException($"{path}: '{name}' must be positive but is {v}");
            return v;
        }

        double? ToDouble(JsonElement? v, string name)
        {
            if (v is null) return null;
            if (v.Value.ValueKind != JsonValueKind.Number || !v.Value.TryGetDouble(out double d) || !double.IsFinite(d))
                throw new ApbException($"{path}: '{name}' should be a number but is {v.Value.GetRawText()}");
            return d;
        }

        public bool? Bool(string name)
        {
            var v = Get(name);
            if (v is null) return null;
            return v.Value.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new ApbException($"{path}: '{name}' should be true or false but is {v.Value.GetRawText()}"),
            };
        }

        /// <summary>
        /// Mistral's sliding_window: null (Mistral 7B v0.2 on) means full causal attention, and so does a window that
        /// covers max_position_embeddings, the longest sequence the engine accepts (prompts are checked against it).
        /// </summary>
        public int? SlidingWindow(int maxPositions) => PositiveInt("sliding_window") is int w && w < maxPositions ? w : null;

        public int? TokenId(int? id, string name, int vocab) => id is int v && (v < 0 || v >= vocab)
            ? throw new ApbException($"{path}: '{name}' holds token id {v}, outside the vocabulary (0..{vocab - 1}) that vocab_size gives")
            : id;

        public IReadOnlyList<int> IntOrList(string name)
        {
            var v = Get(name);
            if (v is null) return Array.Empty<int>();
            if (v.Value.ValueKind == JsonValueKind.Array)
                return v.Value.EnumerateArray().Select(e => ToInt(e, name)!.Value).ToArray();
            return new[] { ToInt(v, name)!.Value };
        }

        // The frequencies are 1 / theta^(2i/d) in fp32 (as HF computes them): theta <= 1 gives frequencies that do not fall
        // with i (nonsense positions, and NaN once theta underflows fp32 to 0), and theta past fp32's range gives infinity.
        double? Theta(double? theta, string name) => theta is double t && (t <= 1 || t > float.MaxValue)
            ? throw new ApbException($"{path}: '{name}' is {t}; the rotary base must be greater than 1 and within fp32's range (Llama 3 uses 500000, Qwen 2.5 1000000)")
            : theta;

        // transformers 4.x: rope_theta at top level, rope_scaling {rope_type|type, factor, ...} or null.
        // transformers 5.x: rope_parameters {rope_type, rope_theta, factor, ...}.
        public RopeConfig Rope(int maxPositions)
        {
            PartialRotaryFactor("partial_rotary_factor", Get("partial_rotary_factor"));
            JsonElement? p = Get("rope_parameters") ?? Get("rope_scaling");
            string where = Get("rope_parameters") is null ? "rope_scaling" : "rope_parameters";
            double theta = Theta(PositiveDouble("rope_theta"), "rope_theta") ?? 10000.0;
            if (p is null) return new RopeConfig(RopeType.Default, theta);
            if (p.Value.ValueKind != JsonValueKind.Object)
                throw new ApbException($"{path}: '{where}' should be an object but is {p.Value.GetRawText()}");
            var obj = p.Value;
            JsonElement? Field(string n) => obj.TryGetProperty(n, out var x) && x.ValueKind != JsonValueKind.Null ? x : null;
            theta = Theta(Positive(ToDouble(Field("rope_theta"), $"{where}.rope_theta"), $"{where}.rope_theta"), $"{where}.rope_theta") ?? theta;

            string typeKey = Field("rope_type") is not null || Field("type") is null ? "rope_type" : "type";
            string? type = ToString(Field(typeKey), $"{where}.{typeKey}");
            // transformers 5.x may nest one set per layer type ({"full_attention": {...}, "sliding_attention": {...}}).
            if (type is null)
                foreach (var e in obj.EnumerateObject())
                    if (e.Value.ValueKind == JsonValueKind.Object)
                        throw new ApbException($"{path}: {where} holds per-layer-type parameters ('{e.Name}': {{...}}); only a single set of rope parameters is supported");
            type ??= "default";
            PartialRotaryFactor($"{where}.partial_rotary_factor", Field("partial_rotary_factor"));

            ApbException Missing(string n) => new($"{path}: {where} of type {type} needs '{n}', which is missing");
            double Required(string n) =>
                Positive(ToDouble(Field(n), $"{where}.{n}"), $"{where}.{n}") ?? throw Missing(n);
            switch (type)
            {
                case "default":
                    return new RopeConfig(RopeType.Default, theta);
                case "linear":
                    return new RopeConfig(RopeType.Linear, theta, Required("factor"));
                case "llama3":
                {
                    // transformers refuses a llama3 config without any of these (KeyError); defaulting would silently differ.
                    double factor = Required("factor"), low = Required("low_freq_factor"), high = Required("high_freq_factor");
                    if (high <= low)
                        throw new ApbException($"{path}: {where}.high_freq_factor {high} must be greater than low_freq_factor {low}");
                    const string orig = "original_max_position_embeddings";
                    int original = Positive(ToInt(Field(orig), $"{where}.{orig}"), $"{where}.{orig}") ?? throw Missing(orig);
                    return new RopeConfig(RopeType.Llama3, theta, factor, low, high, original);
                }
                case "dynamic":
                    // transformers' dynamic NTK scales from max_position_embeddings (it ignores an
                    // original_max_position_embeddings inside the rope parameters).
                    return new RopeConfig(RopeType.Dynamic, theta, Required("factor"), OriginalMaxPositions: maxPositions);
                case "yarn":
                    return Yarn(theta, maxPositions, where, Field, Missing);
                case "longrope":
                    throw new ApbException($"{path}: {where}.{typeKey} is 'longrope', which is not supported (supported: {string.Join(", ", SupportedRope)}): " +
                        "Phi-3's per-dimension short_factor / long_factor lists, switched at original_max_position_embeddings, are not implemented");
                default:
                    throw new ApbException($"{path}: {where}.{typeKey} is '{type}', which is not supported (supported: {string.Join(", ", SupportedRope)})");
            }
        }

        // YaRN as transformers 5 reads it: factor as given (or max_position_embeddings / original when the factor is
        // missing), the original length from the rope parameters (else max_position_embeddings), and the attention
        // factor given, or from mscale / mscale_all_dim (DeepSeek), or 0.1 ln(factor) + 1. (transformers 4.5x replaced a
        // given factor by max_position_embeddings / original: the two agree whenever the config is consistent.)
        RopeConfig Yarn(double theta, int maxPositions, string where, Func<string, JsonElement?> field, Func<string, ApbException> missing)
        {
            double? Num(string n) => ToDouble(field(n), $"{where}.{n}");
            double? Pos(string n) => Positive(Num(n), $"{where}.{n}");
            const string orig = "original_max_position_embeddings";
            int original = Positive(ToInt(field(orig), $"{where}.{orig}"), $"{where}.{orig}") ?? maxPositions;
            double factor = Pos("factor") ?? (field(orig) is not null ? (double)maxPositions / original : throw missing("factor"));
            static double MScale(double scale, double m = 1) => scale <= 1 ? 1.0 : 0.1 * m * Math.Log(scale) + 1.0;
            double? mscale = Num("mscale"), mscaleAllDim = Num("mscale_all_dim");
            double attention = Pos("attention_factor")
                ?? (mscale is { } a && a != 0 && mscaleAllDim is { } b && b != 0 ? MScale(factor, a) / MScale(factor, b) : MScale(factor));
            // HF reads these with `or`: a missing, null or zero beta takes the default.
            double betaFast = Num("beta_fast") is { } bf && bf != 0 ? bf : 32, betaSlow = Num("beta_slow") is { } bs && bs != 0 ? bs : 1;
            var t = field("truncate");
            bool truncate = t is null || t.Value.ValueKind != JsonValueKind.False;
            if (t is { ValueKind: not (JsonValueKind.True or JsonValueKind.False) })
                throw new ApbException($"{path}: {where}.truncate should be true or false but is {t.Value.GetRawText()}");
            return new RopeConfig(RopeType.Yarn, theta, factor, OriginalMaxPositions: original,
                AttentionFactor: attention, BetaFast: betaFast, BetaSlow: betaSlow, Truncate: truncate);
        }

        // Partial rotary embeddings (Phi, GPT-NeoX style) rotate only the first part of each head: not implemented.
        void PartialRotaryFactor(string name, JsonElement? v)
        {
            double f = ToDouble(v, name) ?? 1.0;
            if (f != 1.0)
                throw new ApbException($"{path}: {name} is {f}; only full rotary embeddings (1.0) are supported");
        }
    }
}
