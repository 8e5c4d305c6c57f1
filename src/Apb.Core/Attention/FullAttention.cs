using Apb.Backends;
using Apb.Checkpoints;
using Apb.Diagnostics;
using Apb.Model;

namespace Apb.Attention;

/// <summary>
/// Exact causal attention on one rank with a KV cache: the new rows get positions Length, Length+1, ... of their
/// layer's cache, are rotated, appended, and attend to the whole cache with bottom-right causal alignment. Prefill
/// and decode are the same call. A sliding-window model (Mistral) sees only the window: the keys before the first
/// row's window are not read at all, and the window itself is the attention op's mask when rows of the call need
/// different windows (a decode row's window is exactly the slice, so decode keeps the fast kernels). Dynamic-NTK RoPE
/// rotates with the table for this call's length (<see cref="RopeTable.ForLength"/>). Owns its caches: Dispose gives
/// them back to the backend.
/// </summary>
public sealed class FullAttention : IAttention, IDisposable
{
    readonly IBackend _b;
    readonly ModelConfig _c;
    readonly RopeTable _rope;
    public KvCache[] Caches { get; }
    int[] _positions = [];

    public FullAttention(IBackend backend, ModelConfig config, RopeTable rope, int capacity, KvCacheDType kvDType = KvCacheDType.Auto)
    {
        _b = backend; _c = config; _rope = rope;
        Caches = Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new KvCache(backend, config.KvDim, capacity, kvDType)).ToArray();
    }

    public KvCacheDType KvDType => Caches[0].DType;

    public int Length => Caches[0].Length;
    public Diagnostics.Profile? Profile { get; set; }

    /// <summary>Visible (query, key) pairs of Tq queries against Tk keys, causal with bottom-right alignment.</summary>
    public static double CausalPairs(int tq, int tk)
    {
        double shift = tk - tq, pairs = 0;
        // row i sees min(tk, i + shift + 1) keys, clamped at 0
        for (int i = 0; i < tq; i++) pairs += Math.Clamp(i + shift + 1, 0, tk);
        return pairs;
    }

    public void Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor output)
    {
        var cache = Caches[layer];
        int start = cache.Length;
        if (_positions.Length < q.Rows) _positions = new int[q.Rows];
        var positions = _positions.AsSpan(0, q.Rows);
        for (int i = 0; i < positions.Length; i++) positions[i] = start + i;
        using (Profile?.Measure("other"))
        {
            cache.RopeAppend(q, k, v, _c.NumAttentionHeads, _c.NumKeyValueHeads, positions, _rope.ForLength(start + q.Rows));
        }
        using var _ = Profile?.Measure("attention");
        // Keys [from, Length): the first row's window starts at start - W + 1. With the keys cut there, the window still
        // hides something only when some row would otherwise see more than W keys.
        int w = _c.SlidingWindow ?? 0, from = w > 0 ? Math.Max(0, start - w + 1) : 0, keys = cache.Length - from;
        int window = w > 0 && keys > w ? w : 0;
        // An fp8 cache: a decode step (one row) reads the stored rows, with the device's fp8 kernel where it has one. A
        // prefill or a chunk of several rows attends to its own rows as computed (k rotated in place by the append)
        // and to earlier rows as stored, as the sequence-parallel strategies' prefill does: a prompt's own attention
        // is then exact, and full attention stays the exact peer the other strategies are compared with.
        cache.Attend(q, _c.NumAttentionHeads, _c.NumKeyValueHeads, AttentionMask.Causal, output, null, from, keys, window,
                     q.Rows > 1 ? (k, v) : null);
        Profile?.AddAttention(CausalPairs(q.Rows, keys) - (window > 0 ? CausalPairs(q.Rows, keys - window) : 0), _c.NumAttentionHeads, _c.HeadDim);
    }

    /// <summary>
    /// One decode row for each of several sequences (row i is sequence i's next token) in one pass: the rows rotated
    /// together, appended to their own caches, and one <see cref="IBackend.DecodeAttention"/> call for the batch, where
    /// one attention per sequence would leave a GPU mostly idle. False (nothing done) where the sequences cannot share
    /// the calls: other backends or shapes, or a RoPE table that depends on each call's length (dynamic NTK).
    /// </summary>
    public static bool TryDecodeBatch(IReadOnlyList<FullAttention> seqs, int layer, Tensor q, Tensor k, Tensor v, Tensor output)
    {
        if (seqs.Count == 0 || q.Rows != seqs.Count) return false;
        var first = seqs[0];
        var b = first._b; var c = first._c; var kv = first.KvDType;
        foreach (var s in seqs)
            if (!ReferenceEquals(s._b, b) || !ReferenceEquals(s._c, c) || !ReferenceEquals(s._rope.ForLength(s.Caches[layer].Length + 1), s._rope) ||
                s.KvDType != kv)
                return false;
        var positions = new int[seqs.Count];
        for (int i = 0; i < seqs.Count; i++) positions[i] = seqs[i].Caches[layer].Length;
        using (first.Profile?.Measure("other"))
        {
            b.Rope(q, c.NumAttentionHeads, positions, first._rope);
            b.Rope(k, c.NumKeyValueHeads, positions, first._rope);
        }
        var keys = new Tensor[seqs.Count]; var values = new Tensor[seqs.Count];
        var kRows = new Tensor[seqs.Count]; var vRows = new Tensor[seqs.Count];
        for (int i = 0; i < seqs.Count; i++) (kRows[i], vRows[i]) = seqs[i].Caches[layer].AppendRawRows(1);
        b.ScatterRowsKv(k, kRows, kv);
        b.ScatterRowsKv(v, vRows, kv);
        int w = c.SlidingWindow ?? 0;
        for (int i = 0; i < seqs.Count; i++)
        {
            var cache = seqs[i].Caches[layer];
            // A decode row's window is exactly the cache's last W rows: the slice is the whole mask.
            int from = w > 0 ? Math.Max(0, cache.Length - w) : 0;
            keys[i] = cache.RawK.RowSlice(from, cache.Length - from);
            values[i] = cache.RawV.RowSlice(from, cache.Length - from);
        }
        using (first.Profile?.Measure("attention"))
        {
            b.DecodeAttentionKv(q, keys, values, c.NumAttentionHeads, c.NumKeyValueHeads, output, kv);
            first.Profile?.AddAttention(keys.Sum(t => (double)t.Rows), c.NumAttentionHeads, c.HeadDim);
        }
        return true;
    }

    public void Dispose()
    {
        foreach (var c in Caches) c.Dispose();
    }
}
