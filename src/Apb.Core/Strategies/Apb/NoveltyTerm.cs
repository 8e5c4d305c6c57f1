using Apb.Backends;
using Apb.Checkpoints;

namespace Apb.Strategies.Apb;

/// <summary>
/// A key's novelty within its block, mixed into a score per token and KV head (post-RoPE keys, fp32):
///   s'[t, h] = z(s[t, h]) + weight x z(-K[t, h] . kbar[h]),
/// kbar[h] the mean of the block's own keys for head h, z each head's column standardized over the block
/// (<see cref="IPassingOps.CombineStandardized"/>). A chain of facts (variable tracking: "VAR B = VAR A") shares no tokens
/// with the question past its first link, and a trained scorer rarely sees one; its links are what a block holds that its
/// filler does not, keys far from the block's mean key. Both APB scorers mix it in (docs/apb-algorithm.md, 2.3b).
/// Three backend ops, all on the backend: the key mean, the dots against it, the mix.
/// </summary>
public sealed class NoveltyTerm(IBackend backend, ModelConfig config) : IDisposable
{
    /// <summary>
    /// The term's default weight against the query term's (both standardized): equal. --novelty-weight overrides this and
    /// <see cref="WithHeads"/> (<see cref="StrategyOptions.NoveltyWeight"/>).
    /// </summary>
    public const float Weight = 1f;

    /// <summary>
    /// The term's weight against the retaining heads' score (both standardized). At 4K on the CPU (10 samples per task,
    /// bench/results/scorer-cpu-20261203-defaults) 0.5 and 1 kept the same vt (98.0), multi-query and multi-value, and
    /// 0.5 kept niah_single_3 at 100 where 1 lost a sample: the heads already know the needles, the term adds the chains.
    /// </summary>
    public const float WithHeads = 0.5f;

    Tensor? _similarity, _keyMean, _widened;

    // Made with the term, before any layer runs: an upload inside a layer is a host round trip the prefill waits on
    // (tests/Apb.Gpu.Tests, MachineryCases, counts them).
    Tensor? _ones = Ones(backend, config.NumKeyValueHeads);

    static Tensor Ones(IBackend backend, int kv)
    {
        var t = backend.AllocateF32(1, kv);
        backend.Upload(Enumerable.Repeat(1f, kv).ToArray(), t);
        return t;
    }

    /// <summary><paramref name="scores"/> [rows, n_kv] fp32 on the backend, replaced by the mix; keys: the block's first rows.</summary>
    public void MixInto(Tensor scores, Tensor keys, float weight)
    {
        int kv = config.NumKeyValueHeads, rows = scores.Rows;
        _similarity = Sized(_similarity, rows, kv);
        _keyMean ??= backend.AllocateF32(1, config.KvDim);
        var block = keys.RowSlice(0, rows);
        var ops = backend.Passing;
        ops.GroupMean(block, kv, kv, _keyMean);
        ops.HeadDot(block, _keyMean, kv, _similarity);
        // Novelty is distance from the block's mean key: the similarity, weighted negatively.
        ops.CombineStandardized(scores, 1f, _similarity, -weight, scores);
    }

    /// <summary>
    /// Scores in the backend's activation type (the retaining heads' output) as an fp32 copy the mix can write: a per-head
    /// dot with 1 over one column per head, which is exact (bf16 x 1 in fp32). The copy is reused by the next call.
    /// </summary>
    public Tensor Widened(Tensor scores)
    {
        int kv = config.NumKeyValueHeads;
        ObjectDisposedException.ThrowIf(_ones is null, this);
        _widened = Sized(_widened, scores.Rows, kv);
        backend.Passing.HeadDot(scores, _ones, kv, _widened);
        return _widened;
    }

    Tensor Sized(Tensor? t, int rows, int cols)
    {
        if (t is not null && t.Rows == rows) return t;
        t?.Dispose();
        return backend.AllocateF32(rows, cols);
    }

    public void Dispose()
    {
        foreach (var t in new[] { _similarity, _keyMean, _widened, _ones }) t?.Dispose();
        _similarity = _keyMean = _widened = _ones = null;
    }
}
