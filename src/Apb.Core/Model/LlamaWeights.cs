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
        IWeight W(string name, params long[] shape) => backend.Load(ckpt.Get(name, shape));
        IWeight? B(bool present, string name, long n) => present ? W(name, n) : null;

        var layers = new LayerWeights[c.NumHiddenLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            string p = $"model.layers.{i}.";
            layers[i] = new LayerWeights(
                W(p + "input_layernorm.weight", h),
                W(p + "self_attn.q_proj.weight", q, h), B(c.QkvBias, p + "self_attn.q_proj.bias", q),
                W(p + "self_attn.k_proj.weight", kv, h), B(c.QkvBias, p + "self_attn.k_proj.bias", kv),
                W(p + "self_attn.v_proj.weight", kv, h), B(c.QkvBias, p + "self_attn.v_proj.bias", kv),
                W(p + "self_attn.o_proj.weight", h, q), B(c.OutputBias, p + "self_attn.o_proj.bias", h),
                W(p + "post_attention_layernorm.weight", h),
                W(p + "mlp.gate_proj.weight", inter, h), B(c.MlpBias, p + "mlp.gate_proj.bias", inter),
                W(p + "mlp.up_proj.weight", inter, h), B(c.MlpBias, p + "mlp.up_proj.bias", inter),
                W(p + "mlp.down_proj.weight", h, inter), B(c.MlpBias, p + "mlp.down_proj.bias", h));
        }
        var embed = W("model.embed_tokens.weight", c.VocabSize, h);
        // Tied checkpoints usually omit lm_head.weight; when a tied checkpoint still carries it, it equals the embedding.
        var head = c.TieWordEmbeddings ? embed : W("lm_head.weight", c.VocabSize, h);
        return new LlamaWeights { EmbedTokens = embed, Layers = layers, Norm = W("model.norm.weight", h), LmHead = head };
    }
}
