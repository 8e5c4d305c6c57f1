using Apb.Checkpoints;

namespace Apb.Backends.Cpu;

/// <summary>A weight read in place from the memory-mapped checkpoint; bf16/f16 rows are widened to fp32 as they are used.</summary>
public sealed unsafe class CpuWeight : IWeight
{
    public string Name { get; }
    public int Rows { get; }
    public int Cols { get; }
    public DType DType { get; }
    public byte* Data { get; }

    public CpuWeight(WeightView w)
    {
        Name = w.Name;
        DType = w.DType;
        Data = w.Data;
        Rows = (int)w.Shape[0];
        Cols = w.Shape.Length > 1 ? (int)w.Shape[1] : 1;
        if (w.Shape.Length > 2)
            throw new ApbException($"tensor '{w.Name}' has {w.Shape.Length} dimensions; weights are matrices or vectors");
    }

    float[]? _vector;

    /// <summary>The whole weight widened to fp32 once and kept: for the small vectors (norms, biases) read every layer.</summary>
    public float[] Vector
    {
        get
        {
            if (_vector != null) return _vector;
            var v = new float[(long)Rows * Cols];
            ReadRows(0, v);
            return _vector = v;
        }
    }

    /// <summary>Widens rows [row, row + dst.Length / Cols) to fp32.</summary>
    public void ReadRows(int row, Span<float> dst) =>
        DTypes.ToFloat(DType, Data + (long)row * Cols * DTypes.Size(DType), dst);

    /// <summary>The fp32 rows in place when the checkpoint is fp32 (no copy), else null.</summary>
    public float* F32Rows(int row) => DType == DType.F32 ? (float*)Data + (long)row * Cols : null;
}
