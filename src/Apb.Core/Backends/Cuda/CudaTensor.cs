using Apb.Checkpoints;

namespace Apb.Backends.Cuda;

/// <summary>Element types of device tensors: bf16 activations, fp32 for LSE rows (see <see cref="CudaBackend.AllocateF32"/>).</summary>
/// <summary>Element types of device tensors: bf16 activations, fp32 (LSE rows, merge weights, fp8 scales), and bytes (FP8 E4M3 codes of an fp8 KV cache).</summary>
public enum CudaDType { BF16, F32, U8 }

/// <summary>
/// A row-major [Rows, Cols] tensor in device memory. Views (row slices, reshapes) point into their parent's block and never own it;
/// disposing the owner returns the block to the backend's pool. Undisposed tensors are freed with the backend.
/// </summary>
public sealed class CudaTensor : Tensor
{
    readonly CudaBackend? _owner;   // null for views
    public CudaBackend Backend { get; }
    public ulong Ptr { get; private set; }
    public CudaDType DType { get; }
    public int ElementSize => DType switch { CudaDType.BF16 => 2, CudaDType.U8 => 1, _ => 4 };
    public long Bytes => (long)Rows * Cols * ElementSize;

    internal CudaTensor(CudaBackend backend, ulong ptr, int rows, int cols, CudaDType dtype, bool owns)
    {
        Backend = backend; Ptr = ptr; Rows = rows; Cols = cols; DType = dtype;
        _owner = owns ? backend : null;
    }

    public override Tensor RowSlice(int start, int count)
    {
        if (start < 0 || count < 0 || start + count > Rows)
            throw new ArgumentOutOfRangeException(nameof(start), $"rows [{start}, {start + count}) of a {Rows}-row tensor");
        return new CudaTensor(Backend, Ptr + (ulong)((long)start * Cols * ElementSize), count, Cols, DType, owns: false);
    }

    public override Tensor View(int rows, int cols)
    {
        CheckView(rows, cols);
        return new CudaTensor(Backend, Ptr, rows, cols, DType, owns: false);
    }

    public override void Dispose()
    {
        if (_owner != null && Ptr != 0) _owner.Pool.Return(Ptr);
        Ptr = 0;
    }

    public override string ToString() => $"CudaTensor<{DType}>[{Rows}, {Cols}]";
}

/// <summary>A weight uploaded once to the device, always bf16 (f16 and f32 checkpoints are converted on the GPU).</summary>
public sealed class CudaWeight : IWeight
{
    public string Name { get; }
    public int Rows { get; }
    public int Cols { get; }
    public ulong Ptr { get; }

    internal CudaWeight(string name, int rows, int cols, ulong ptr) { Name = name; Rows = rows; Cols = cols; Ptr = ptr; }

    public override string ToString() => $"CudaWeight {Name} [{Rows}, {Cols}] bf16";
}
