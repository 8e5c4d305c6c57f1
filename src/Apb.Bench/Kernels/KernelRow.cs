using Apb.Bench.Timing;
using static Apb.Bench.Markdown;

namespace Apb.Bench.Kernels;

/// <summary>What bounds a kernel, and so what its time is held against.</summary>
public enum Bound
{
    /// <summary>Tensor-core FLOPs: against the H200's bf16 spec and the achievable GEMM rate.</summary>
    Compute,
    /// <summary>Bytes to and from HBM: against its bandwidth.</summary>
    Memory,
    /// <summary>CPU attention: (query row, key, head) pairs, stated per pair (a CPU has no single peak to hold it against).</summary>
    CpuPairs,
    /// <summary>CPU products: FLOPs, stated as GFLOP/s (no peak to hold them against either).</summary>
    CpuFlops,
}

/// <summary>The work of one timed call: how much (FLOPs, bytes or pairs) and the formula that counted it.</summary>
public sealed record Work(Bound Bound, double Amount, string Formula, double Flops = 0);

/// <summary>One timed configuration of a kernel, and the line of arithmetic that puts its time against the hardware.</summary>
public sealed record KernelRow(string Kernel, string Variant, string Shape, int Size, TimingStats Time, Work Work)
{
    double Seconds => Time.MedianMs * 1e-3;

    /// <summary>TFLOP/s (compute), TB/s (memory), ns per pair (CPU attention) or GFLOP/s (CPU products).</summary>
    public double Rate => Work.Bound switch
    {
        Bound.Compute => Work.Amount / Seconds / 1e12,
        Bound.Memory => Work.Amount / Seconds / 1e12,
        Bound.CpuFlops => Work.Amount / Seconds / 1e9,
        _ => Seconds / Work.Amount * 1e9,
    };

    public string RateUnit => Work.Bound switch { Bound.Compute => "TFLOP/s", Bound.Memory => "TB/s", Bound.CpuFlops => "GFLOP/s", _ => "ns/pair" };

    /// <summary>Of the spec peak: bf16 dense TFLOP/s or HBM bandwidth; NaN on the CPU.</summary>
    public double OfSpec => Work.Bound switch
    {
        Bound.Compute => Rate / H200.SpecBf16Tflops,
        Bound.Memory => Rate / H200.HbmTBs,
        _ => double.NaN,
    };

    /// <summary>Of what a tuned cuBLAS GEMM reaches (compute-bound kernels only).</summary>
    public double OfAchievable => Work.Bound == Bound.Compute ? Rate / H200.AchievableBf16Tflops : double.NaN;

    public string OfPeak => Work.Bound switch
    {
        Bound.Compute => $"{F(OfSpec, "P0")} spec, {F(OfAchievable, "P0")} achievable",
        Bound.Memory => $"{F(OfSpec, "P0")} of HBM",
        Bound.CpuFlops => "-",
        _ => $"{F(Work.Flops / Seconds / 1e9, "F1")} GFLOP/s",
    };

    public string Arithmetic => Work.Bound switch
    {
        Bound.Compute => $"{Work.Formula} = {Sci(Work.Amount)} FLOP in {Time.MedianMs:F3} ms = {Rate:F1} TFLOP/s: " +
                         $"{F(OfSpec, "P1")} of the {H200.SpecBf16Tflops:F0} TFLOP/s bf16 spec, {F(OfAchievable, "P1")} of the {H200.AchievableBf16Tflops:F0} a cuBLAS GEMM reaches",
        Bound.Memory => $"{Work.Formula} = {Work.Amount / 1e9:F3} GB in {Time.MedianMs:F3} ms = {Rate:F3} TB/s: {F(OfSpec, "P1")} of the {H200.HbmTBs} TB/s HBM",
        Bound.CpuFlops => $"{Work.Formula} = {Sci(Work.Amount)} FLOP in {Time.MedianMs:F3} ms = {Rate:F1} GFLOP/s",
        _ => $"{Work.Formula} = {Sci(Work.Amount)} pairs in {Time.MedianMs:F1} ms = {Rate:F2} ns per pair " +
             $"({Work.Flops / Seconds / 1e9:F1} GFLOP/s at 4 d FLOP per pair)",
    };
}

/// <summary>One correctness comparison a harness made before timing.</summary>
public sealed record KernelCheck(string What, double Error, double Limit)
{
    public bool Pass => Error <= Limit; // NaN fails
}
