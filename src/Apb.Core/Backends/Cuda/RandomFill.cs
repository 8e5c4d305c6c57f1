
namespace Apb.Backends.Cuda;

/// <summary>
/// Fills device memory with the same counter-based random values <see cref="RandomWeights"/> computes on the host, by a
/// kernel: a random-weight 8B model is made on the GPU in milliseconds with no host buffer.
/// </summary>
public static unsafe class RandomFill
{
    const string File = "random.cu";
    const string Fn = "apb_fill_uniform_bf16";

    /// <summary>A [rows, cols] bf16 weight with values offset + U(-scale, scale) from the tensor's key.</summary>
    public static CudaWeight Weight(CudaBackend b, string name, int rows, int cols, ulong key, float scale, float offset)
    {
        long n = (long)rows * cols;
        b.Context.MakeCurrent();
        ulong p = b.Pool.Rent(n * 2, $"weight {name}");
        Fill(b, p, n, key, scale, offset);
        return new CudaWeight(name, rows, cols, p);
    }

    /// <summary>Fills a bf16 tensor (benchmark inputs) with U(-scale, scale) from (seed, stream).</summary>
    public static void Fill(CudaTensor t, ulong seed, ulong stream, float scale)
    {
        if (t.DType != CudaDType.BF16) throw new ArgumentException($"random fill: {t} must be bf16");
        t.Backend.Context.MakeCurrent();
        Fill(t.Backend, t.Ptr, (long)t.Rows * t.Cols, RandomValues.Key(seed, stream), scale, 0f);
    }

    static void Fill(CudaBackend b, ulong dst, long n, ulong key, float scale, float offset)
    {
        if (n == 0) return;
        void** args = stackalloc void*[] { &dst, &n, &key, &scale, &offset };
        b.Context.Launch(b.Context.Function(File, Fn), Fn, (CudaBackend.GridFor(n), 1, 1), 256, 0, args);
    }
}
