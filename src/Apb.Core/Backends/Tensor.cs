namespace Apb.Backends;

/// <summary>
/// A 2-D activation tensor [Rows, Cols] in row-major order, owned by one backend. Rows are tokens, columns features
/// (heads x head_dim side by side). Views share storage with their parent and never own it. Dispose gives an owning
/// tensor's storage back to its backend (a device pool reuses only what is disposed; the GC never sees device memory);
/// disposing a view does nothing.
/// </summary>
public abstract class Tensor : IDisposable
{
    public int Rows { get; protected init; }
    public int Cols { get; protected init; }

    /// <summary>Rows [start, start + count) as a tensor sharing this one's storage.</summary>
    public abstract Tensor RowSlice(int start, int count);

    public virtual void Dispose() { }

    public override string ToString() => $"{GetType().Name}[{Rows}, {Cols}]";
}
