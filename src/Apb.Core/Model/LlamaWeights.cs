using Apb.Backends;
using Apb.Checkpoints;

namespace Apb.Model;

/// <summary>
/// One decoder layer's weights, named as in the checkpoint (model.layers.{i}.*). QNorm / KNorm: Qwen3's per-head
/// RMSNorm weights over head_dim (self_attn.q_norm / k_norm), null for the architectures without them.
/// </summary>
public sealed record LayerWeights(
    IWeight InputLayernorm,
    IWeight QProj, IWeight? QBias, IWeight KProj, IWeight? KBias, IWeight VProj, IWeight? VBias,
    IWeight OProj, IWeight? OBias,
    IWeight PostAttentionLayernorm,
    IWeight GateProj, IWeight? GateBias, IWeight UpProj, IWeight? UpBias, IWeight DownProj, IWeight? DownBias,
    IWeight? QNorm = null, IWeight? KNorm = null);

/// <summary>
/// The weights of a LlamaForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM / MistralForCausalLM checkpoint, each checked
/// against the shape config.json implies. Qwen2 is Llama with q/k/v biases (and usually tied embeddings), Qwen3 Llama
/// with per-head q/k norms, Mistral Llama with a sliding window (an attention rule, no weights), so one loader serves all.
/// </summary>
public sealed class LlamaWeights
{
    public required IWeight EmbedTokens { get; init; }
    public required LayerWeights[] Layers { get; init; }
    public required IWeight Norm { get; init; }
    public required IWeight LmHead { get; init; }

    /// <summary>What a tensor is, for whoever makes it: its error messages (checkpoints) or its values (random weights).</summary>
    public enum Role { Embedding, Matrix, Norm, HeadNorm, AttentionBias, MlpBias, LmHead }

    /// <summary>One tensor of the architecture: name, shape, the config fields its shape comes from, role, layer (-1: none).</summary>
    public sealed record Spec(string Name, long[] Shape, string Dims, Role Role, int Layer);

    /// <summary>
    /// The architecture's tensors, in checkpoint order, each made by <paramref name="make"/>: the one table of names, shapes
    /// and optional biases that checkpoint loading and random weights share. Biases the config does not enable are not
    /// asked for; a tied output projection is the embedding.
    /// </summary>
    public static LlamaWeights Build(ModelConfig c, Func<Spec, IWeight> make)
    {
        long h = c.HiddenSize, inter = c.IntermediateSize, q = c.QDim, kv = c.KvDim;
        const string H = "hidden_size", I = "intermediate_size", Q = "num_attention_heads x head_dim", KV = "num_key_value_heads x head_dim";
        const string D = "head_dim";
        int layer = -1;
        IWeight W(string name, long[] shape, string dims, Role role = Role.Matrix) => make(new Spec(name, shape, dims, role, layer));
        IWeight? B(bool present, string name, long n, string dims, Role role) => present ? W(name, [n], dims, role) : null;

        // The embedding first: it names vocab_size and hidden_size, the two fields a wrong config most often gets wrong.
        var embed = W("model.embed_tokens.weight", [c.VocabSize, h], $"vocab_size, {H}", Role.Embedding);
        var layers = new LayerWeights[c.NumHiddenLayers];
        for (layer = 0; layer < layers.Length; layer++)
        {
            string p = $"model.layers.{layer}.";
            layers[layer] = new LayerWeights(
                W(p + "input_layernorm.weight", [h], H, Role.Norm),
                W(p + "self_attn.q_proj.weight", [q, h], $"{Q}, {H}"), B(c.QkvBias, p + "self_attn.q_proj.bias", q, Q, Role.AttentionBias),
                W(p + "self_attn.k_proj.weight", [kv, h], $"{KV}, {H}"), B(c.QkvBias, p + "self_attn.k_proj.bias", kv, KV, Role.AttentionBias),
                W(p + "self_attn.v_proj.weight", [kv, h], $"{KV}, {H}"), B(c.QkvBias, p + "self_attn.v_proj.bias", kv, KV, Role.AttentionBias),
                W(p + "self_attn.o_proj.weight", [h, q], $"{H}, {Q}"), B(c.OutputBias, p + "self_attn.o_proj.bias", h, H, Role.AttentionBias),
                W(p + "post_attention_layernorm.weight", [h], H, Role.Norm),
                W(p + "mlp.gate_proj.weight", [inter, h], $"{I}, {H}"), B(c.MlpBias, p + "mlp.gate_proj.bias", inter, I, Role.MlpBias),
                W(p + "mlp.up_proj.weight", [inter, h], $"{I}, {H}"), B(c.MlpBias, p + "mlp.up_proj.bias", inter, I, Role.MlpBias),
                W(p + "mlp.down_proj.weight", [h, inter], $"{H}, {I}"), B(c.MlpBias, p + "mlp.down_proj.bias", h, H, Role.MlpBias),
                B(c.QkNorm, p + "self_attn.q_norm.weight", c.HeadDim, D, Role.HeadNorm),
                B(c.QkNorm, p + "self_attn.k_norm.weight", c.HeadDim, D, Role.HeadNorm));
        }
        layer = -1;
        var norm = W("model.norm.weight", [h], H, Role.Norm);
        var head = c.TieWordEmbeddings ? embed : W("lm_head.weight", [c.VocabSize, h], $"vocab_size, {H}", Role.LmHead);
        return new LlamaWeights { EmbedTokens = embed, Layers = layers, Norm = norm, LmHead = head };
    }

    /// <summary>The tensors <see cref="Build"/> asks for, in its order, without making any.</summary>
    public static List<Spec> Specs(ModelConfig c)
    {
        var specs = new List<Spec>();
        Build(c, t => { specs.Add(t); return Placeholder.Instance; });
        return specs;
    }

    sealed class Placeholder : IWeight
    {
        public static readonly Placeholder Instance = new();
        public string Name => "placeholder";
        public int Rows => 0;
        public int Cols => 0;
    }

    /// <summary>
    /// The checkpoint's tensors on <paramref name="backend"/>, each checked against its expected shape;
    /// <paramref name="progress"/> (optional) hears after each tensor how far the load is.
    /// </summary>
    public static LlamaWeights Load(ModelConfig c, CheckpointWeights ckpt, IBackend backend, Action<LoadProgress>? progress = null)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        // The tensors the config asks for that the checkpoint has: what a load moves, for progress reports.
        var wanted = Specs(c).Where(t => ckpt.Contains(t.Name)).ToList();
        long totalBytes = wanted.Sum(t => ckpt.Info(t.Name).End - ckpt.Info(t.Name).Begin), bytes = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // Why a missing tensor is an error, in the terms of the config field that asked for it.
        string? WhyNeeded(Spec t) => t.Role switch
        {
            Role.AttentionBias => c.Architecture == "Qwen2ForCausalLM"
                ? $"{c.Architecture} always has q/k/v biases: the checkpoint is incomplete or is not a Qwen2 model"
                : "config.json sets attention_bias true; set it to false if the model has no attention biases",
            Role.MlpBias => "config.json sets mlp_bias true; set it to false if the model has no MLP biases",
            Role.HeadNorm => $"{c.Architecture} normalizes q and k per head before RoPE (self_attn.q_norm / k_norm): the checkpoint is incomplete or is not a {c.Architecture} model",
            Role.LmHead => "config.json says tie_word_embeddings false, so the output projection must be stored; set tie_word_embeddings to true if the model reuses model.embed_tokens.weight",
            _ when t.Layer >= 0 && !ckpt.Tensors.Any(x => x.Name.StartsWith($"model.layers.{t.Layer}.", StringComparison.Ordinal)) =>
                $"the checkpoint has no layer {t.Layer} but config.json says num_hidden_layers {c.NumHiddenLayers}",
            _ => null,
        };
        var weights = Build(c, t =>
        {
            if (!ckpt.Contains(t.Name) && WhyNeeded(t) is { } why)
                throw new ApbException($"{ckpt.Directory}: tensor '{t.Name}' is missing from the checkpoint (expected shape [{string.Join(", ", t.Shape)}] ({t.Dims})): {why}");
            used.Add(t.Name);
            var weight = backend.Load(ckpt.Get(t.Name, t.Shape, t.Dims));
            var info = ckpt.Info(t.Name);
            bytes += info.End - info.Begin;
            progress?.Invoke(new LoadProgress(bytes, totalBytes, used.Count, wanted.Count, clock.Elapsed));
            return weight;
        });

        // A tensor nobody reads means config.json describes a different model (fewer layers, no biases) than the weights:
        // running anyway would compute garbage without a word. Older Llama exports also store RoPE's inv_freq; we compute it.
        // Tied checkpoints usually omit lm_head.weight; when a tied checkpoint still carries it, it equals the embedding.
        var unused = ckpt.Tensors.Select(t => t.Name)
            .Where(n => !used.Contains(n) && !n.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal) && !(c.TieWordEmbeddings && n == "lm_head.weight"))
            .Order(StringComparer.Ordinal).ToList();
        if (unused.Count > 0)
            throw new ApbException($"{ckpt.Directory}: {unused.Count} tensor(s) of the checkpoint are not part of {c.Architecture} as config.json describes it, e.g. "
                + string.Join(", ", unused.Take(3).Select(n => $"'{n}'"))
                + $": check architectures, num_hidden_layers ({c.NumHiddenLayers}), attention_bias, mlp_bias and tie_word_embeddings in config.json"
                + (unused.Any(n => n.EndsWith("self_attn.q_norm.weight", StringComparison.Ordinal)) ? " (self_attn.q_norm / k_norm are Qwen3ForCausalLM's)" : ""));
        return weights;
    }
}
