using Apb.Backends;

namespace Apb.Model;

/// <summary>
/// The one call the model makes for attention. The model is unaware of ranks, positions and caches: the strategy behind
/// this call (full attention with a KV cache, APB, ring, ...) applies RoPE with the positions it knows for these rows,
/// keeps what it must for later steps, talks to other ranks, and writes the attention output.
/// </summary>
public interface IAttention
{
    /// <param name="layer">layer index</param>
    /// <param name="q">[T, heads x head_dim] before RoPE (the strategy may rotate it in place)</param>
    /// <param name="k">[T, kv_heads x head_dim] before RoPE</param>
    /// <param name="v">[T, kv_heads x head_dim]</param>
    /// <param name="output">[T, heads x head_dim]</param>
    void Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor output);
}
