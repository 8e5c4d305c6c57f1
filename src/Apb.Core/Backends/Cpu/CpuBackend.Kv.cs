namespace Apb.Backends.Cpu;

/// <summary>
/// The CPU's KV cache of <see cref="KvCacheDType.Fp8"/>: the reference for the device's fp8 cache. Rows stay fp32, each
/// holding the value its fp8 code stands for (<see cref="Fp8E4M3.RoundGroups"/>: a scale per 32 values), so the
/// attention ops read them unchanged and compute with the keys and values a GPU's fp8 cache holds. It saves no memory.
/// </summary>
public sealed partial class CpuBackend
{
    public Tensor AllocateKv(int rows, int cols, KvCacheDType dtype)
    {
        CheckKv(cols, dtype);
        return Allocate(rows, cols);
    }

    public long KvBytes(long rows, int cols, KvCacheDType dtype) => rows * cols * sizeof(float);

    public void RopeAppendKv(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, ReadOnlySpan<int> positions, RopeTable table,
                             Tensor kDst, Tensor vDst, KvCacheDType dtype)
    {
        CheckKv(kDst.Cols, dtype);
        ((IBackend)this).RopeAppend(q, k, v, heads, kvHeads, positions, table, kDst, vDst);
        RoundKv(kDst, 0, kDst.Rows, dtype);
        RoundKv(vDst, 0, vDst.Rows, dtype);
    }

    public void AppendKv(Tensor src, int srcRow, Tensor dst, int dstRow, int rows, KvCacheDType dtype)
    {
        CheckKv(dst.Cols, dtype);
        Copy(src, srcRow, 0, dst, dstRow, 0, rows, src.Cols);
        RoundKv(dst, dstRow, rows, dtype);
    }

    public Tensor ReadKv(Tensor rows, int cols, KvCacheDType dtype, bool values) => rows;

    static void CheckKv(int cols, KvCacheDType dtype)
    {
        if (dtype == KvCacheDType.Fp8 && cols % KvCacheDTypes.Fp8Group != 0)
            throw new ApbException($"an fp8 KV cache row of {cols} values: it must be a multiple of {KvCacheDTypes.Fp8Group} (a scale per {KvCacheDTypes.Fp8Group})");
    }

    static void RoundKv(Tensor t, int row, int rows, KvCacheDType dtype)
    {
        if (dtype != KvCacheDType.Fp8) return;
        var c = (CpuTensor)t;
        for (int r = row; r < row + rows; r++) Fp8E4M3.RoundGroups(c.Row(r), KvCacheDTypes.Fp8Group);
    }
}
