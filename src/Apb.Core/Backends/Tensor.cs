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

    /// <summary>
    /// The same elements, in the same order, seen as [rows, cols] (rows x cols = Rows x Cols), sharing this one's storage:
    /// [T, heads x d] seen as [T x heads, d] lets a per-row op (RMSNorm) run per head.
    /// </summary>
    public abstract Tensor View(int rows, int cols);

    protected void CheckView(int rows, int cols)
    {
        if (rows < 0 || cols <= 0 || (long)rows * cols != (long)Rows * Cols)
            throw new ArgumentException($"a view [{rows}, {cols}] of {this} must have its {(long)Rows * Cols} elements");
    }

    public virtual void Dispose() { }

    public override string ToString() => $"{GetType().Name}[{Rows}, {Cols}]";
}
