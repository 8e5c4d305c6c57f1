namespace Apb.Bench.Timing;

/// <summary>
/// Device time per kernel (APB_KERNEL_TIMES=1: each launch between two CUDA events) split three ways, the split issue
/// #19 asks a prefill to report: attention (the attention kernels themselves), matrix products (cuBLASLt and the
/// matrix-vector kernels) and everything else (norms, RoPE, SiLU, copies, V's transpose, merges), which has no FLOP
/// floor of its own and should tend to zero.
/// </summary>
public static class KernelShares
{
    public enum Kind { Attention, Products, Other }

    /// <summary>
    /// Which of the three a kernel's name belongs to: apb_attention_* and the split-KV decode's apb_decode_* (its merge
    /// of the splits included) are attention; cublasLt* and apb_gemv_* are products.
    /// </summary>
    public static Kind Of(string kernel) =>
        kernel.StartsWith("apb_attention", StringComparison.Ordinal) || kernel.StartsWith("apb_decode", StringComparison.Ordinal) ? Kind.Attention
        : kernel.StartsWith("cublasLt", StringComparison.Ordinal) || kernel.StartsWith("apb_gemv", StringComparison.Ordinal) ? Kind.Products
        : Kind.Other;

    /// <summary>Milliseconds of each kind (indexed by <see cref="Kind"/>) in a list of (kernel, launches, ms).</summary>
    public static double[] Split(IEnumerable<(string Name, long Count, double Ms)> kernels)
    {
        var ms = new double[3];
        foreach (var k in kernels) ms[(int)Of(k.Name)] += k.Ms;
        return ms;
    }
}
