using Apb.Backends;
using Apb.Bench.Timing;
using Apb.Strategies;

namespace Apb.Bench.Prefill;

/// <summary>What `apb bench prefill` was asked to run (the CLI parses its options into this).</summary>
public sealed record PrefillSettings
{
    /// <summary>A random-weight shape name, or null (then <see cref="Model"/>, or llama-3.1-8b).</summary>
    public string? Shape { get; init; }
    /// <summary>A Hugging Face checkpoint folder instead of a shape.</summary>
    public string? Model { get; init; }
    public required StrategyKind[] Strategies { get; init; }
    /// <summary>APB's scorer (--scorer), or null for auto: the retaining heads where the model folder ships them.</summary>
    public ScorerKind? Scorer { get; init; }
    /// <summary>--novelty-weight: APB's novelty term's weight, or null for the scorer's own.</summary>
    public float? NoveltyWeight { get; init; }
    /// <summary>--passing-budget: APB's passing budget, or null for the default (twice the default l_p); 0: none.</summary>
    public int? PassingBudget { get; init; }
    /// <summary>--retaining-heads: a safetensors file of retaining heads, or null.</summary>
    public string? RetainingHeads { get; init; }
    public required int[] Lengths { get; init; }
    /// <summary>Ranks of the parallel strategies: in-process threads (null: 2; the CLI passes its default, 4); under apb launch, the processes.</summary>
    public int? Ranks { get; init; }
    /// <summary>The device as the user named it (cpu, cuda, cuda:N), for messages.</summary>
    public required string Device { get; init; }
    /// <summary>Makes a backend on that device: rank 0's, and each further in-process rank's.</summary>
    public required Func<IBackend> NewBackend { get; init; }
    public int Warmup { get; init; } = 1;
    public int Repeats { get; init; } = 3;
    /// <summary>Stop repeating a case once its timed runs add up to this many seconds (0: always <see cref="Repeats"/>).</summary>
    public double RepeatBudget { get; init; }
    /// <summary>Query tokens after the context, at least one (APB puts them in its anchor).</summary>
    public int Query { get; init; } = 64;
    /// <summary>bf16 TFLOP/s per GPU for the FLOP floor of the exact strategies.</summary>
    public double PeakTflops { get; init; } = H200.AchievableBf16Tflops;
    /// <summary>
    /// GB/s per direction of the GPU-to-GPU link the modeled multi-GPU prefill assumes (<see cref="PrefillModel"/>):
    /// NVLink 4 on an H200 SXM is 18 links of 50 GB/s both ways together, 900 GB/s per GPU, so 450 GB/s each way.
    /// </summary>
    public double LinkGBps { get; init; } = PrefillModel.NvLink4GBps;
    /// <summary>Folder for prefill.json and prefill.md.</summary>
    public required string Out { get; init; }
    public ulong Seed { get; init; } = 1;
    /// <summary>Run each case once instrumented first (per-phase times, bytes moved).</summary>
    public bool Profile { get; init; } = true;
    /// <summary>An SVG chart of the seconds against length, written at the end (none: no chart).</summary>
    public string? Chart { get; init; }
    /// <summary>The command line as typed, recorded in the JSON.</summary>
    public required string CommandLine { get; init; }

    /// <summary>The query tokens each case runs (one at least: a prefill ends on a query row).</summary>
    public int QueryTokens => Math.Max(Query, 1);
}

/// <summary>One (strategy, length) result.</summary>
public sealed record PrefillCase
{
    public required string Strategy { get; init; }
    public required int Length { get; init; }
    public int Ranks { get; init; }
    public string Status { get; init; } = "ok";          // ok | oom | skipped | error
    public string? Note { get; init; }
    public string? Plan { get; init; }
    public List<double> Seconds { get; init; } = [];      // each timed run: the slowest rank's wall time
    public double[]? RankSeconds { get; init; }           // last timed run, per rank
    public double[]? PeakGiB { get; init; }               // per rank, max over the runs
    public double? NeedGiB { get; init; }                 // predicted per-rank need (device only)
    public double[][]? Profiles { get; init; }            // per rank: RankProfileTable.Values
    /// <summary>APB_KERNEL_TIMES=1 on a GPU: rank 0's device time per kernel, summed over the timed runs.</summary>
    public IReadOnlyList<(string Name, long Count, double Ms)>? Kernels { get; init; }
    public double Median => Stats.Median(Seconds);
    /// <summary>The timed runs <see cref="Kernels"/> adds up: its per-prefill figures divide by this (0: none).</summary>
    public int KernelRuns => Kernels is { Count: > 0 } ? Seconds.Count : 0;
}
