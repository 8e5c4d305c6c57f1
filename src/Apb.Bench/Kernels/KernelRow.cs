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
    /// <summary>
    /// With --rounds: each round's timing of this row, in order; <see cref="Time"/> then holds the rounds' medians (so the
    /// row's median, and its rate, are the median of the rounds' medians). Null for a row timed once.
    /// </summary>
    public IReadOnlyList<TimingStats>? Rounds { get; init; }

    /// <summary>The fastest single call: over every round's calls with --rounds.</summary>
    public double MinMs => Rounds is { } rounds ? rounds.Min(r => r.MinMs) : Time.MinMs;

    /// <summary>How many calls were timed: "20", or "3 x 20" for 3 rounds of 20.</summary>
    public string RunsText => Rounds is { } rounds ? $"{rounds.Count} x {rounds[0].RunsMs.Length}" : $"{Time.RunsMs.Length}";

    /// <summary>
    /// One row per row of a round (the same order, which <see cref="Apb.Bench.Kernels.KernelBench"/> interleaves: every
    /// variant of a size once per round), each with every round's timing. A row is known by its kernel, variant, shape
    /// and which repeat of those it is within its round (a variant listed twice times twice per round).
    /// </summary>
    public static List<KernelRow> Merge(IReadOnlyList<IReadOnlyList<KernelRow>> rounds)
    {
        if (rounds.Count == 1) return [.. rounds[0]];
        var keyed = rounds.Select(Keyed).ToList();
        var merged = new List<KernelRow>();
        foreach (var (key, first) in keyed[0])
        {
            var each = keyed.Select((k, i) => k.TryGetValue(key, out var row) ? row.Time
                : throw new InvalidOperationException($"round {i + 1} has no row {key}: a harness must time the same rows every round")).ToList();
            merged.Add(first with { Time = TimingStats.Of([.. each.Select(t => t.MedianMs)]), Rounds = each });
        }
        return merged;

        static Dictionary<string, KernelRow> Keyed(IReadOnlyList<KernelRow> rows)
        {
            var seen = new Dictionary<string, int>();
            var keyed = new Dictionary<string, KernelRow>();
            foreach (var r in rows)
            {
                string name = $"{r.Kernel} | {r.Variant} | {r.Shape}";
                int n = seen.GetValueOrDefault(name);
                seen[name] = n + 1;
                keyed.Add($"{name} #{n + 1}", r);
            }
            return keyed;
        }
    }

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
