namespace Apb.Backends.Cpu;

/// <summary>An fp32 tensor in a managed array; views carry an offset into their parent's array.</summary>
public sealed class CpuTensor : Tensor
{
    public float[] Data { get; }
    public int Offset { get; }

    public CpuTensor(int rows, int cols) : this(new float[checked(rows * cols)], 0, rows, cols) { }

    public CpuTensor(float[] data, int offset, int rows, int cols)
    {
        if (offset + (long)rows * cols > data.Length)
            throw new ArgumentException($"view [{rows}, {cols}] at {offset} exceeds storage of {data.Length}");
        Data = data; Offset = offset; Rows = rows; Cols = cols;
    }

    public Span<float> Span => Data.AsSpan(Offset, Rows * Cols);
    public Span<float> Row(int r) => Data.AsSpan(Offset + r * Cols, Cols);

    public override Tensor RowSlice(int start, int count)
    {
        if (start < 0 || count < 0 || start + count > Rows)
            throw new ArgumentOutOfRangeException(nameof(start), $"rows [{start}, {start + count}) of a {Rows}-row tensor");
        return new CpuTensor(Data, Offset + start * Cols, count, Cols);
    }

    public override Tensor View(int rows, int cols)
    {
        CheckView(rows, cols);
        return new CpuTensor(Data, Offset, rows, cols);
    }
}
