using Apb.Backends;

namespace Apb.Distributed;

/// <summary>
/// Post-RoPE keys and values of one layer, [Length, kv_heads x head_dim] each, in a buffer that grows by doubling.
/// Positions are not stored: whoever appends knows them.
/// </summary>
public sealed class KvCache
{
    readonly IBackend _b;
    Tensor _k, _v;

    public int Length { get; private set; }
    public int Capacity => _k.Rows;
    public int Cols { get; }

    public KvCache(IBackend backend, int cols, int capacity)
    {
        _b = backend; Cols = cols;
        _k = backend.Allocate(Math.Max(capacity, 1), cols);
        _v = backend.Allocate(Math.Max(capacity, 1), cols);
    }

    public Tensor K => _k.RowSlice(0, Length);
    public Tensor V => _v.RowSlice(0, Length);

    public void Append(Tensor k, Tensor v, int rowStart = 0, int rows = -1)
    {
        if (rows < 0) rows = k.Rows - rowStart;
        if (Length + rows > Capacity) Grow(Math.Max(Length + rows, Capacity * 2));
        _b.Copy(k, rowStart, 0, _k, Length, 0, rows, Cols);
        _b.Copy(v, rowStart, 0, _v, Length, 0, rows, Cols);
        Length += rows;
    }

    /// <summary>Forgets everything from row <paramref name="length"/> on (e.g. padding appended during prefill).</summary>
    public void Truncate(int length)
    {
        if (length < 0 || length > Length) throw new ArgumentOutOfRangeException(nameof(length));
        Length = length;
    }

    void Grow(int capacity)
    {
        var k = _b.Allocate(capacity, Cols); var v = _b.Allocate(capacity, Cols);
        if (Length > 0)
        {
            _b.Copy(_k, 0, 0, k, 0, 0, Length, Cols);
            _b.Copy(_v, 0, 0, v, 0, 0, Length, Cols);
        }
        _k = k; _v = v;
    }
}
