using Apb.Backends;

namespace Apb.Attention;

/// <summary>
/// Post-RoPE keys and values of one layer, [Length, kv_heads x head_dim] each. The buffers are allocated on the first
/// append (so a <see cref="Reserve"/> before it costs no second allocation) and grow by a quarter when full; the old
/// buffers are given back as soon as they are copied (a 64K-row block of an 8B-shape model, kv_dim 1024 in bf16, is
/// 128 MiB for K and as much for V in each layer: keeping old and new alive together across 32 layers is what made the
/// last rank peak 16 GiB above the others in bench/results/prefill-20261128-135235).
/// Positions are not stored: whoever appends knows them. Dispose gives the buffers back: a device backend's memory
/// pool only reuses what is disposed, so a server that drops a request's cache without it loses that memory for good.
/// A cache of another <see cref="KvCacheDType"/> than Auto (fp8) keeps its rows in the backend's form of that dtype:
/// its writers go through <see cref="RopeAppend"/> and <see cref="Append"/>, its readers through <see cref="K"/> and
/// <see cref="V"/> (the values, converted into the backend's scratch: use them before the next read) or the backend's
/// <see cref="IBackend.TryAttentionKv"/> on <see cref="RawK"/> and <see cref="RawV"/>.
/// </summary>
public sealed class KvCache : IDisposable
{
    readonly IBackend _b;
    Tensor? _k, _v;
    int _capacity;

    public int Length { get; private set; }
    public int Capacity => _capacity;
    public int Cols { get; }
    public KvCacheDType DType { get; }

    /// <summary>Bytes the K and V buffers take now (0 before the first append allocates them).</summary>
    public long AllocatedBytes => _k is null ? 0 : 2 * _b.KvBytes(_capacity, Cols, DType);

    public KvCache(IBackend backend, int cols, int capacity, KvCacheDType dtype = KvCacheDType.Auto)
    {
        _b = backend; Cols = cols; DType = dtype;
        _capacity = Math.Max(capacity, 1);
    }

    /// <summary>The keys' values [Length, Cols]: the buffer itself (Auto), or its rows converted into the backend's scratch.</summary>
    public Tensor K => DType == KvCacheDType.Auto ? RawK : _b.ReadKv(RawK, Cols, DType, values: false);
    public Tensor V => DType == KvCacheDType.Auto ? RawV : _b.ReadKv(RawV, Cols, DType, values: true);

    /// <summary>The stored rows [Length, ...] in the dtype's own form (what <see cref="IBackend.TryAttentionKv"/> takes).</summary>
    public Tensor RawK => Buffers().k.RowSlice(0, Length);
    public Tensor RawV => Buffers().v.RowSlice(0, Length);

    /// <summary>
    /// <see cref="IBackend.Attention"/> of <paramref name="q"/> to rows [from, from + count) of this cache: straight from
    /// the stored rows where the backend has a kernel for the dtype (<see cref="IBackend.TryAttentionKv"/>), else to
    /// their values (<see cref="K"/>, <see cref="V"/>). <paramref name="fresh"/>: the rows this call just appended (the
    /// last of the range), as computed before they were stored; a cache of another dtype than Auto then attends to them
    /// as they are and to the earlier rows as stored. A prefill of an fp8 cache so attends to its own keys and values
    /// exactly, as the sequence-parallel strategies' prefill does, and only what later calls read is quantized.
    /// </summary>
    public void Attend(Tensor q, int heads, int kvHeads, AttentionMask mask, Tensor output, Tensor? lse, int from = 0, int count = -1, int window = 0,
                       (Tensor K, Tensor V)? fresh = null)
    {
        if (count < 0) count = Length - from;
        if (DType == KvCacheDType.Auto)
        {
            _b.Attention(q, RawK.RowSlice(from, count), RawV.RowSlice(from, count), heads, kvHeads, mask, output, lse, window);
            return;
        }
        if (fresh is { } f)
        {
            AttendWithFresh(q, heads, kvHeads, mask, output, lse, from, count, window, f.K, f.V);
            return;
        }
        Tensor k = RawK.RowSlice(from, count), v = RawV.RowSlice(from, count);
        if (window == 0 && _b.TryAttentionKv(q, k, v, heads, kvHeads, mask, output, lse, DType)) return;
        // Only the rows attended to are converted (a sliding window's, not the whole cache).
        _b.Attention(q, _b.ReadKv(k, Cols, DType, values: false), _b.ReadKv(v, Cols, DType, values: true), heads, kvHeads, mask, output, lse, window);
    }

    /// <summary>Rows [from, from + count) whose last fresh.Rows are <paramref name="k"/>, <paramref name="v"/> as computed.</summary>
    void AttendWithFresh(Tensor q, int heads, int kvHeads, AttentionMask mask, Tensor output, Tensor? lse, int from, int count, int window, Tensor k, Tensor v)
    {
        int old = count - k.Rows;
        if (old < 0 || from + count != Length || v.Rows != k.Rows || k.Cols != Cols || v.Cols != Cols)
            throw new ArgumentException($"KvCache.Attend: {k.Rows} fresh rows of {k.Cols} values as the last of rows [{from}, {from + count}) of a cache of {Length} rows of {Cols}");
        if (old == 0)
        {
            _b.Attention(q, k, v, heads, kvHeads, mask, output, lse, window);
            return;
        }
        // A later chunk: the earlier rows' values, then this chunk's own, in one tensor each.
        using var kAll = _b.Allocate(count, Cols);
        using var vAll = _b.Allocate(count, Cols);
        _b.Copy(_b.ReadKv(RawK.RowSlice(from, old), Cols, DType, values: false), 0, 0, kAll, 0, 0, old, Cols);
        _b.Copy(k, 0, 0, kAll, old, 0, k.Rows, Cols);
        _b.Copy(_b.ReadKv(RawV.RowSlice(from, old), Cols, DType, values: true), 0, 0, vAll, 0, 0, old, Cols);
        _b.Copy(v, 0, 0, vAll, old, 0, v.Rows, Cols);
        _b.Attention(q, kAll, vAll, heads, kvHeads, mask, output, lse, window);
    }

    bool _disposed;

    (Tensor k, Tensor v) Buffers()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_k is null || _v is null)
        {
            _k = _b.AllocateKv(_capacity, Cols, DType);
            _v = _b.AllocateKv(_capacity, Cols, DType);
        }
        return (_k, _v);
    }

    /// <summary>Makes room for at least <paramref name="capacity"/> rows in all (free before the first append).</summary>
    public void Reserve(int capacity)
    {
        if (capacity > _capacity) Grow(capacity);
    }

    public void Append(Tensor k, Tensor v, int rowStart = 0, int rows = -1)
    {
        if (rows < 0) rows = k.Rows - rowStart;
        if (Length + rows > Capacity) Grow(Math.Max(Length + rows, Capacity + Math.Max(Capacity / 4, 1024)));
        var (bk, bv) = Buffers();
        _b.AppendKv(k, rowStart, bk, Length, rows, DType);
        _b.AppendKv(v, rowStart, bv, Length, rows, DType);
        Length += rows;
    }

    /// <summary>
    /// A step's rotation and append (<see cref="IBackend.RopeAppendKv"/>): q and k rotated in place, the rotated k and
    /// v stored as the cache's next rows.
    /// </summary>
    public void RopeAppend(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, ReadOnlySpan<int> positions, RopeTable table)
    {
        int rows = k.Rows;
        if (Length + rows > Capacity) Grow(Math.Max(Length + rows, Capacity + Math.Max(Capacity / 4, 1024)));
        var (bk, bv) = Buffers();
        _b.RopeAppendKv(q, k, v, heads, kvHeads, positions, table, bk.RowSlice(Length, rows), bv.RowSlice(Length, rows), DType);
        Length += rows;
    }

    /// <summary>
    /// Takes the next <paramref name="rows"/> rows (growing the buffers when full) and returns them as stored, in the
    /// dtype's own form, for the caller to fill with a writer of that form: a batched decode step fills every
    /// sequence's next row at once with <see cref="IBackend.ScatterRowsKv"/>. An Auto cache's rows are plain tensors.
    /// </summary>
    public (Tensor K, Tensor V) AppendRawRows(int rows)
    {
        if (Length + rows > Capacity) Grow(Math.Max(Length + rows, Capacity + Math.Max(Capacity / 4, 1024)));
        var (bk, bv) = Buffers();
        Length += rows;
        return (bk.RowSlice(Length - rows, rows), bv.RowSlice(Length - rows, rows));
    }

    /// <summary>Forgets everything from row <paramref name="length"/> on (e.g. padding appended during prefill).</summary>
    public void Truncate(int length)
    {
        if (length < 0 || length > Length) throw new ArgumentOutOfRangeException(nameof(length));
        Length = length;
    }

    void Grow(int capacity)
    {
        if (_k is null || _v is null) { _capacity = capacity; return; }
        var k = _b.AllocateKv(capacity, Cols, DType); var v = _b.AllocateKv(capacity, Cols, DType);
        if (Length > 0)
        {
            // Whole stored rows, in whatever form the dtype keeps them.
            _b.Copy(_k, 0, 0, k, 0, 0, Length, _k.Cols);
            _b.Copy(_v, 0, 0, v, 0, 0, Length, _v.Cols);
        }
        // Work queued on the stream that still reads the old buffers is ordered before any reuse of their memory.
        _k?.Dispose();
        _v?.Dispose();
        _k = k; _v = v; _capacity = capacity;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _k?.Dispose();
        _v?.Dispose();
        _k = _v = null;
        Length = 0;
    }
}
