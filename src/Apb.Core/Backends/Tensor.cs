namespace Apb.Backends;

/// <summary>
/// A 2-D activation tensor [Rows, Cols] in row-major order, owned by one backend. Rows are tokens, columns features
/// (heads x head_dim side by side). Views share storage with their parent and never own it.
/// </summary>
public abstract class Tensor
{
    public int Rows { get; protected init; }
    public int Cols { get; protected init; }

    /// <summary>Rows [start, start + count) as a tensor sharing this one's storage.</summary>
    public abstract Tensor RowSlice(int start, int count);

    public override string ToString() => $"{GetType().Name}[{Rows}, {Cols}]";
}
