namespace Apb.Bench.Kernels;

/// <summary>
/// The timing harness of one kernel family, as llm.c keeps one per kernel: a quick correctness check against the CPU
/// reference at a small size (<see cref="Check"/>, which stops the run when it fails), then each size timed
/// (<see cref="Time"/>: warm-up and the median of repeats) with the work it does counted, so each row can be put
/// against the hardware's peak.
/// </summary>
public abstract class KernelHarness
{
    public abstract string Name { get; }
    /// <summary>One line: which kernels it times, at which shapes.</summary>
    public abstract string Summary { get; }
    /// <summary>What a size given with --lengths means here.</summary>
    public abstract string SizeMeaning { get; }
    public abstract int[] DefaultSizes { get; }
    public virtual bool NeedsGpu => true;
    /// <summary>Whether --variants means something here (attention, decode).</summary>
    public virtual bool HasVariants => false;
    /// <summary>Whether --mask and --extra-keys mean something here (attention).</summary>
    public virtual bool HasMasks => false;

    public abstract void Check(KernelBenchContext ctx);
    public abstract IEnumerable<KernelRow> Time(KernelBenchContext ctx, int size);

    /// <summary>The variants asked for (or the defaults), refusing names the harness does not have.</summary>
    protected static string[] Pick(KernelBenchContext ctx, string[] available, string[] defaults)
    {
        if (ctx.Settings.Variants is not { } asked) return defaults;
        foreach (var v in asked)
            if (!available.Contains(v))
                throw new ApbException($"bench kernel {ctx.Settings.Name}: no variant '{v}' here (this GPU has: {string.Join(", ", available)})");
        return asked;
    }
}

/// <summary>Every harness by name (`apb bench kernel NAME`).</summary>
public static class KernelHarnesses
{
    public static IReadOnlyList<KernelHarness> All { get; } =
    [
        new AttentionHarness(), new DecodeHarness(), new GemmHarness(), new GemvHarness(), new NormHarness(), new RopeHarness(),
        new MergeHarness(), new PassingHarness(), new CriticalPathHarness(), new CpuAttentionHarness(), new CpuMatMulHarness(),
    ];

    public static IEnumerable<string> Names => All.Select(h => h.Name);

    public static KernelHarness Find(string name) =>
        All.FirstOrDefault(h => h.Name == name.ToLowerInvariant())
        ?? throw new ApbException($"no kernel harness '{name}': choose one of {string.Join(", ", Names)}");
}
