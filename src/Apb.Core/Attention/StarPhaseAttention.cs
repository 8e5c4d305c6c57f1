using Apb.Backends;
using Apb.Checkpoints;
using Apb.Comms;
using Apb.Diagnostics;
using Apb.Model;

namespace Apb.Attention;

/// <summary>
/// The exact phase after a distributed prefill, for the query and every generated token, the same for every strategy.
/// Each rank attends the new tokens to its own cache: all of it, with no mask, because every cached token precedes
/// every new one (the reference implementation's causal flag hid the tail of remote blocks from the first query
/// tokens; that is a bug we do not reproduce). The last rank also holds the new tokens' K/V and attends to them
/// causally. The partial (out, lse) of all ranks are all-gathered and merged in fp32 with max subtraction in rank
/// order, so every rank ends with bit-identical outputs and runs the rest of the layer identically.
/// </summary>
public sealed class StarPhaseAttention : IAttention, IDisposable
{
    readonly IBackend _b;
    readonly ModelConfig _c;
    readonly RopeTable _rope;
    readonly ICommunicator _comm;
    readonly KvCache[] _caches;
    Tensor? _part, _partLse, _outs, _lses;

    /// <summary>Global position of the first of the next new tokens (n + tokens processed so far).</summary>
    public int Position { get; set; }
    public Profile? Profile { get; set; }
    public IReadOnlyList<KvCache> Caches => _caches;
    bool IsLast => _comm.Rank == _comm.WorldSize - 1;

    public StarPhaseAttention(IBackend backend, ModelConfig config, RopeTable rope, ICommunicator comm, KvCache[] caches, int position)
    {
        _b = backend; _c = config; _rope = rope; _comm = comm; _caches = caches; Position = position;
    }

    /// <summary>Call after the forward of a step: the new tokens now have positions.</summary>
    public void Advance(int tokens) => Position += tokens;

    public void Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor output)
    {
        int t = q.Rows, heads = _c.NumAttentionHeads, kvHeads = _c.NumKeyValueHeads, h = _comm.WorldSize;
        var positions = new int[t];
        for (int i = 0; i < t; i++) positions[i] = Position + i;
        using (Profile?.Measure("other"))
        {
            _b.Rope(q, heads, positions, _rope);
            _b.Rope(k, kvHeads, positions, _rope);
        }
        if (_part is null || _part.Rows != t)
        {
            DisposeBuffers();
            _part = _b.Allocate(t, _c.QDim); _partLse = _b.AllocateF32(t, heads);
            if (h > 1) { _outs = _b.Allocate(h * t, _c.QDim); _lses = _b.AllocateF32(h * t, heads); }
        }

        var cache = _caches[layer];
        using (Profile?.Measure("attention"))
        {
            if (IsLast)
            {
                cache.Append(k, v);
                _b.Attention(q, cache.K, cache.V, heads, kvHeads, AttentionMask.Causal, _part, _partLse);
                Profile?.AddAttention(FullAttention.CausalPairs(t, cache.Length), heads, _c.HeadDim);
            }
            else if (cache.Length > 0)
            {
                _b.Attention(q, cache.K, cache.V, heads, kvHeads, AttentionMask.None, _part, _partLse);
                Profile?.AddAttention((double)t * cache.Length, heads, _c.HeadDim);
            }
            else
            {
                // A rank whose block was all padding sees nothing: it contributes weight exp(-inf) = 0.
                _b.Upload(new float[t * _c.QDim], _part);
                var none = new float[t * heads];
                Array.Fill(none, float.NegativeInfinity);
                _b.Upload(none, _partLse!);
            }
        }
        if (h == 1)
        {
            _b.Copy(_part, 0, 0, output, 0, 0, t, _c.QDim);
            return;
        }

        _comm.AllGather(_part, _outs!);
        _comm.AllGather(_partLse!, _lses!);
        using var _ = Profile?.Measure("attention");
        // Every rank merges the same gathered parts in rank order, in fp32, rounding once: identical bits on every rank.
        _b.MergeAttentionParts(_outs!, _lses!, h, heads, output);
    }

    void DisposeBuffers()
    {
        foreach (var t in new[] { _part, _partLse, _outs, _lses }) t?.Dispose();
        _part = _partLse = _outs = _lses = null;
    }

    /// <summary>Gives back the step buffers (not the caches: whoever made them owns them).</summary>
    public void Dispose() => DisposeBuffers();
}
