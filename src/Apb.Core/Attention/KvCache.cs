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
/// </summary>
public sealed class KvCache : IDisposable
{
    readonly IBackend _b;
    Tensor? _k, _v;
    int _capacity;

    public int Length { get; private set; }
    public int Capacity => _capacity;
    public int Cols { get; }

    /// <summary>Bytes the K and V buffers take now (0 before the first append allocates them).</summary>
    public long AllocatedBytes => _k is null ? 0 : 2L * _capacity * Cols * _b.ActivationBytes;

    public KvCache(IBackend backend, int cols, int capacity)
    {
        _b = backend; Cols = cols;
        _capacity = Math.Max(capacity, 1);
    }

    public Tensor K => Buffers().k.RowSlice(0, Length);
    public Tensor V => Buffers().v.RowSlice(0, Length);

    bool _disposed;

    (Tensor k, Tensor v) Buffers()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_k is null || _v is null)
        {
            _k = _b.Allocate(_capacity, Cols);
            _v = _b.Allocate(_capacity, Cols);
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
        _b.Copy(k, rowStart, 0, bk, Length, 0, rows, Cols);
        _b.Copy(v, rowStart, 0, bv, Length, 0, rows, Cols);
        Length += rows;
    }

    /// <summary>
    /// Takes the next row (growing the buffers when full) and returns it as one-row slices of K and V for the caller to
    /// fill, e.g. with <see cref="IBackend.ScatterRows"/> for a whole batch at once.
    /// </summary>
    public (Tensor K, Tensor V) AppendRow() => AppendRows(1);

    /// <summary>As <see cref="AppendRow"/>, for the next <paramref name="rows"/> rows.</summary>
    public (Tensor K, Tensor V) AppendRows(int rows)
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
        var k = _b.Allocate(capacity, Cols); var v = _b.Allocate(capacity, Cols);
        if (Length > 0)
        {
            _b.Copy(_k, 0, 0, k, 0, 0, Length, Cols);
            _b.Copy(_v, 0, 0, v, 0, 0, Length, Cols);
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
