using Apb.Backends;
using Apb.Checkpoints;

namespace Apb.Model;

/// <summary>One decoder layer's weights, named as in the checkpoint (model.layers.{i}.*).</summary>
public sealed record LayerWeights(
    IWeight InputLayernorm,
    IWeight QProj, IWeight? QBias, IWeight KProj, IWeight? KBias, IWeight VProj, IWeight? VBias,
    IWeight OProj, IWeight? OBias,
    IWeight PostAttentionLayernorm,
    IWeight GateProj, IWeight? GateBias, IWeight UpProj, IWeight? UpBias, IWeight DownProj, IWeight? DownBias);

/// <summary>
/// The weights of a LlamaForCausalLM / Qwen2ForCausalLM checkpoint, each checked against the shape config.json implies.
/// Qwen2 is Llama with q/k/v biases (and usually tied embeddings), so one loader serves both.
/// </summary>
public sealed class LlamaWeights
{
    public required IWeight EmbedTokens { get; init; }
    public required LayerWeights[] Layers { get; init; }
    public required IWeight Norm { get; init; }
    public required IWeight LmHead { get; init; }

    public static LlamaWeights Load(ModelConfig c, CheckpointWeights ckpt, IBackend backend)
    {
        long h = c.HiddenSize, inter = c.IntermediateSize, q = c.QDim, kv = c.KvDim;
        const string H = "hidden_size", I = "intermediate_size", Q = "num_attention_heads x head_dim", KV = "num_key_value_heads x head_dim";
        var used = new HashSet<string>(StringComparer.Ordinal);

        IWeight W(string name, long[] shape, string dims, Func<string>? whyNeeded = null)
        {
            if (!ckpt.Contains(name) && whyNeeded != null)
                throw new ApbException($"{ckpt.Directory}: tensor '{name}' is missing from the checkpoint (expected shape [{string.Join(", ", shape)}] ({dims})): {whyNeeded()}");
            used.Add(name);
            return backend.Load(ckpt.Get(name, shape, dims));
        }
        string AttentionBias() => c.Architecture == "Qwen2ForCausalLM"
            ? $"{c.Architecture} always has q/k/v biases: the checkpoint is incomplete or is not a Qwen2 model"
            : "config.json sets attention_bias true; set it to false if the model has no attention biases";
        string MlpBias() => "config.json sets mlp_bias true; set it to false if the model has no MLP biases";
        IWeight? B(bool present, string name, long n, string dims, Func<string> why) => present ? W(name, [n], dims, why) : null;

        // The embedding first: it names vocab_size and hidden_size, the two fields a wrong config most often gets wrong.
        var embed = W("model.embed_tokens.weight", [c.VocabSize, h], $"vocab_size, {H}");
        var layers = new LayerWeights[c.NumHiddenLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            string p = $"model.layers.{i}.", missingLayer = $"the checkpoint has no layer {i} but config.json says num_hidden_layers {c.NumHiddenLayers}";
            Func<string>? layer = ckpt.Tensors.Any(t => t.Name.StartsWith(p, StringComparison.Ordinal)) ? null : () => missingLayer;
            layers[i] = new LayerWeights(
                W(p + "input_layernorm.weight", [h], H, layer),
                W(p + "self_attn.q_proj.weight", [q, h], $"{Q}, {H}", layer), B(c.QkvBias, p + "self_attn.q_proj.bias", q, Q, AttentionBias),
                W(p + "self_attn.k_proj.weight", [kv, h], $"{KV}, {H}", layer), B(c.QkvBias, p + "self_attn.k_proj.bias", kv, KV, AttentionBias),
                W(p + "self_attn.v_proj.weight", [kv, h], $"{KV}, {H}", layer), B(c.QkvBias, p + "self_attn.v_proj.bias", kv, KV, AttentionBias),
                W(p + "self_attn.o_proj.weight", [h, q], $"{H}, {Q}", layer), B(c.OutputBias, p + "self_attn.o_proj.bias", h, H, AttentionBias),
                W(p + "post_attention_layernorm.weight", [h], H, layer),
                W(p + "mlp.gate_proj.weight", [inter, h], $"{I}, {H}", layer), B(c.MlpBias, p + "mlp.gate_proj.bias", inter, I, MlpBias),
                W(p + "mlp.up_proj.weight", [inter, h], $"{I}, {H}", layer), B(c.MlpBias, p + "mlp.up_proj.bias", inter, I, MlpBias),
                W(p + "mlp.down_proj.weight", [h, inter], $"{H}, {I}", layer), B(c.MlpBias, p + "mlp.down_proj.bias", h, H, MlpBias));
        }
        var norm = W("model.norm.weight", [h], H);
        // Tied checkpoints usually omit lm_head.weight; when a tied checkpoint still carries it, it equals the embedding.
        var head = c.TieWordEmbeddings ? embed : W("lm_head.weight", [c.VocabSize, h], $"vocab_size, {H}",
            () => "config.json says tie_word_embeddings false, so the output projection must be stored; set tie_word_embeddings to true if the model reuses model.embed_tokens.weight");

        // A tensor nobody reads means config.json describes a different model (fewer layers, no biases) than the weights:
        // running anyway would compute garbage without a word. Older Llama exports also store RoPE's inv_freq; we compute it.
        var unused = ckpt.Tensors.Select(t => t.Name)
            .Where(n => !used.Contains(n) && !n.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal) && !(c.TieWordEmbeddings && n == "lm_head.weight"))
            .Order(StringComparer.Ordinal).ToList();
        if (unused.Count > 0)
            throw new ApbException($"{ckpt.Directory}: {unused.Count} tensor(s) of the checkpoint are not part of {c.Architecture} as config.json describes it, e.g. "
                + string.Join(", ", unused.Take(3).Select(n => $"'{n}'"))
                + $": check num_hidden_layers ({c.NumHiddenLayers}), attention_bias, mlp_bias and tie_word_embeddings in config.json");
        return new LlamaWeights { EmbedTokens = embed, Layers = layers, Norm = norm, LmHead = head };
    }
}
