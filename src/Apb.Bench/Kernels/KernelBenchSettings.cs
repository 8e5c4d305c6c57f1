using Apb.Backends;

namespace Apb.Bench.Kernels;

/// <summary>What `apb bench kernel NAME` was asked to run.</summary>
public sealed record KernelBenchSettings
{
    /// <summary>The harness: one of <see cref="KernelHarnesses.Names"/>.</summary>
    public required string Name { get; init; }
    /// <summary>The sizes to time (what a size means is the harness's: sequence length, rows, GEMM side); null: its defaults.</summary>
    public int[]? Sizes { get; init; }
    /// <summary>Timed calls per row (median reported); null: the harness's default for the size.</summary>
    public int? Repeats { get; init; }
    /// <summary>
    /// GPU rows: milliseconds of device time to run each row's call before timing it (<see cref="Timing.GpuTimer.Measure"/>
    /// says why), so a row times the clock a long call runs at, not the boost of an idle card; 0: one warm-up call.
    /// </summary>
    public int WarmupMs { get; init; } = DefaultWarmupMs;
    public const int DefaultWarmupMs = 1000;
    /// <summary>
    /// How many times to time every row, the rows of a size interleaved (each round times every variant of the size
    /// once: A B A B ...); a row then reports the median of its rounds' medians. For comparing variants: the first rows
    /// of a process can read a few % off the rest on a power-limited card (docs/kernels/attention.md, session 24).
    /// </summary>
    public int Rounds { get; init; } = 1;
    /// <summary>A JSON file for the results (none: the table only).</summary>
    public string? Out { get; init; }
    /// <summary>The CUDA device ordinal of a GPU harness.</summary>
    public int Device { get; init; }
    /// <summary>Which variants of the kernel to time (attention: auto, hopper, mma, generic; decode: split-kv, mma); null: every one this GPU has.</summary>
    public string[]? Variants { get; init; }
    /// <summary>Attention masks to time; null: causal and none.</summary>
    public AttentionMask[]? Masks { get; init; }
    /// <summary>Attention: keys beyond the N query rows (APB's passing block: Tk = N + this).</summary>
    public int ExtraKeys { get; init; }
    /// <summary>The command line as typed, recorded in the JSON.</summary>
    public string CommandLine { get; init; } = "";
}
