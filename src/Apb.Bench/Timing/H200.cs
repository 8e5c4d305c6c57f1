namespace Apb.Bench.Timing;

/// <summary>
/// The peaks a GPU timing is held against (NVIDIA H200 SXM). Spec: 989 TFLOP/s dense bf16 and 4.8 TB/s HBM3e.
/// Achievable: our cuBLASLt bf16 GEMM at 8192^3 ran at 787-807 TFLOP/s on an H200 (`apb check-kernels --bench`,
/// bench/results/cuda-20261128-hopper/summary.md and v1-v2-timings.txt; now `apb bench kernel gemm`), so a kernel at
/// 790 TFLOP/s is as fast as a tuned GEMM gets on this card.
/// </summary>
public static class H200
{
    public const double SpecBf16Tflops = 990;
    public const double AchievableBf16Tflops = 790;
    public const double HbmTBs = 4.8;
}
