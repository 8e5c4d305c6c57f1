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
        int t = q.Rows, h = _comm.WorldSize;
        if (_part is null || _part.Rows != t)
        {
            DisposeBuffers();
            _part = _b.Allocate(t, _c.QDim); _partLse = _b.AllocateF32(t, _c.NumAttentionHeads);
            if (h > 1) { _outs = _b.Allocate(h * t, _c.QDim); _lses = _b.AllocateF32(h * t, _c.NumAttentionHeads); }
        }
        AttendLocally(layer, q, k, v, _part, _partLse!);
        if (h == 1)
        {
            _b.Copy(_part, 0, 0, output, 0, 0, t, _c.QDim);
            return;
        }
        GatherAndMerge(_part, _partLse!, _outs!, _lses!, output);
    }

    /// <summary>
    /// Several sequences' new rows in one step (a batched decode): each attends to its own cache here, then the parts of
    /// all of them travel in one all-gather (two: outputs and log-sum-exps) instead of two per sequence, and are merged
    /// together. Every rank must pass the same sequences in the same order (the group's decode batch, filtered to the
    /// distributed sequences, is). Rows are merged independently, so the bits are those of one sequence at a time.
    /// </summary>
    public static void AttendTogether(IReadOnlyList<(StarPhaseAttention Attention, int At, int Rows)> parts, int layer,
        Tensor q, Tensor k, Tensor v, Tensor output)
    {
        var first = parts[0].Attention;
        IBackend b = first._b;
        var c = first._c;
        int rows = parts.Sum(p => p.Rows), h = first._comm.WorldSize;
        foreach (var p in parts)
            if (!ReferenceEquals(p.Attention._comm, first._comm))
                throw new InvalidOperationException("star-phase sequences decoded together must share one communicator");
        using var part = b.Allocate(rows, c.QDim);
        using var partLse = b.AllocateF32(rows, c.NumAttentionHeads);
        int at = 0;
        foreach (var (a, from, n) in parts)
        {
            a.AttendLocally(layer, q.RowSlice(from, n), k.RowSlice(from, n), v.RowSlice(from, n), part.RowSlice(at, n), partLse.RowSlice(at, n));
            at += n;
        }
        // The usual batch is all distributed sequences, side by side: merge straight into their rows of the output.
        bool together = true;
        int next = parts[0].At;
        foreach (var p in parts) { together &= p.At == next; next = p.At + p.Rows; }
        using var merged = together ? null : b.Allocate(rows, c.QDim);
        var target = merged ?? output.RowSlice(parts[0].At, rows);
        if (h == 1) b.Copy(part, 0, 0, target, 0, 0, rows, c.QDim);
        else
        {
            using var outs = b.Allocate(h * rows, c.QDim);
            using var lses = b.AllocateF32(h * rows, c.NumAttentionHeads);
            first.GatherAndMerge(part, partLse, outs, lses, target);
        }
        if (merged is null) return;
        at = 0;
        foreach (var (_, from, n) in parts)
        {
            b.Copy(merged, at, 0, output, from, 0, n, c.QDim);
            at += n;
        }
    }

    /// <summary>This rank's part for the new rows: RoPE, then attention to its own cache (and, on the last rank, to them).</summary>
    void AttendLocally(int layer, Tensor q, Tensor k, Tensor v, Tensor part, Tensor partLse)
    {
        int t = q.Rows, heads = _c.NumAttentionHeads, kvHeads = _c.NumKeyValueHeads;
        var positions = new int[t];
        for (int i = 0; i < t; i++) positions[i] = Position + i;
        using (Profile?.Measure("other"))
        {
            _b.Rope(q, heads, positions, _rope);
            _b.Rope(k, kvHeads, positions, _rope);
        }
        var cache = _caches[layer];
        using (Profile?.Measure("attention"))
        {
            if (IsLast)
            {
                cache.Append(k, v);
                cache.Attend(q, heads, kvHeads, AttentionMask.Causal, part, partLse);
                Profile?.AddAttention(FullAttention.CausalPairs(t, cache.Length), heads, _c.HeadDim);
            }
            else if (cache.Length > 0)
            {
                cache.Attend(q, heads, kvHeads, AttentionMask.None, part, partLse);
                Profile?.AddAttention((double)t * cache.Length, heads, _c.HeadDim);
            }
            else
            {
                // A rank whose block was all padding sees nothing: it contributes weight exp(-inf) = 0.
                _b.Upload(new float[t * _c.QDim], part);
                var none = new float[t * heads];
                Array.Fill(none, float.NegativeInfinity);
                _b.Upload(none, partLse);
            }
        }
    }

    void GatherAndMerge(Tensor part, Tensor partLse, Tensor outs, Tensor lses, Tensor output)
    {
        _comm.AllGather(part, outs);
        _comm.AllGather(partLse, lses);
        using var _ = Profile?.Measure("attention");
        // Every rank merges the same gathered parts in rank order, in fp32, rounding once: identical bits on every rank.
        _b.MergeAttentionParts(outs, lses, _comm.WorldSize, _c.NumAttentionHeads, output);
    }

    void DisposeBuffers()
    {
        foreach (var t in new[] { _part, _partLse, _outs, _lses }) t?.Dispose();
        _part = _partLse = _outs = _lses = null;
    }

    /// <summary>Gives back the step buffers (not the caches: whoever made them owns them).</summary>
    public void Dispose() => DisposeBuffers();
}
