using System.CommandLine;
using Apb.Backends;
using Apb.Bench.Kernels;

namespace Apb.Cli.Commands;

static partial class BenchCommand
{
    /// <summary>`apb bench kernel NAME`: one kernel family's timing harness (Apb.Bench.Kernels).</summary>
    static Command KernelCommand(Io io)
    {
        var name = new Argument<string>("NAME") { Description = $"the harness: {string.Join(", ", KernelHarnesses.Names)}" };
        var cmd = new Command("kernel", "time one kernel family after a correctness check against the CPU reference: a table, one line of " +
            "arithmetic per row against the H200's peak (990 TFLOP/s bf16 spec, 790 achieved by cuBLAS, 4.8 TB/s HBM), JSON with --out. " +
            string.Join("; ", KernelHarnesses.All.Select(h => $"{h.Name}: {h.Summary} (sizes: {h.SizeMeaning})")))
        {
            name,
        };
        var options = KernelOptions(cmd);
        cmd.SetAction(r => Cli.Guard(io, () => KernelBench.Run(options(r, r.GetValue(name)!), io.Out, io.Err)));
        return cmd;
    }

    /// <summary>`apb bench attention` = `apb bench kernel attention`, with the same options.</summary>
    static Command AttentionCommand(Io io)
    {
        var cmd = new Command("attention", "the attention kernel's timing harness: the same as `apb bench kernel attention`");
        var options = KernelOptions(cmd);
        cmd.SetAction(r => Cli.Guard(io, () => KernelBench.Run(options(r, "attention"), io.Out, io.Err)));
        return cmd;
    }

    /// <summary>Adds the harness options to <paramref name="cmd"/>; the function turns a parse into settings.</summary>
    static Func<ParseResult, string, KernelBenchSettings> KernelOptions(Command cmd)
    {
        var lengths = CommonOptions.OptionalLengths("sizes to time, e.g. 16k,64k (what a size means is the harness's; default: its own)");
        var repeats = new Option<int?>("--repeats") { Description = "timed calls per row, median reported (default: the harness's, by size)" };
        var warmupMs = new Option<int>("--warmup-ms")
        {
            Description = "GPU rows: device time in ms to run a row's call before timing it, so the row sees the clock a long run settles at " +
                          "(an idle card boosts for its first ~200 ms); 0: one warm-up call",
            DefaultValueFactory = _ => KernelBenchSettings.DefaultWarmupMs,
        };
        var rounds = new Option<int>("--rounds")
        {
            Description = "time every row this many times, each size's rows interleaved (every variant once per round: A B A B ...), and report " +
                          "the median of a row's round medians: the way to compare variants, since a process's first rows can read a few % off",
            DefaultValueFactory = _ => 1,
        };
        var output = new Option<string?>("--out", "-o") { Description = "write the results as JSON to this file" };
        var device = new Option<string>("--device") { Description = "the GPU: cuda or cuda:N (cpu-attention and cpu-matmul run on the CPU)", DefaultValueFactory = _ => "cuda" };
        var variants = new Option<string?>("--variants") { Description = "attention: auto (APB_ATTENTION or the backend's pick), hopper, mma, generic, and by name hopper-qk8 (S in e4m3), hopper-pairs (pairs of blocks sharing K/V), hopper-persistent (one block per SM taking items); decode: split-kv (the backend's pick), split-kv2, split-kv2pf, split-kv3 (tensor cores), split-kv1, mma, each split-kv name + -fp8 for an fp8 cache, and split-kv3[-fp8]-onehead (one KV head over 8 x the keys: the same bytes, each block one contiguous run; a layout probe) (default: split-kv, split-kv1, mma, split-kv-fp8)" };
        var mask = new Option<string>("--mask") { Description = "attention: causal, none, or both", DefaultValueFactory = _ => "both" };
        var extraKeys = new Option<int>("--extra-keys") { Description = "attention: keys beyond the N query rows (APB's passing block: Tk = N + this)", DefaultValueFactory = _ => 0 };
        foreach (var o in new Option[] { lengths, repeats, warmupMs, rounds, output, device, variants, mask, extraKeys }) cmd.Options.Add(o);
        return (r, name) =>
        {
            string dev = r.GetValue(device)!;
            int ordinal = CommonOptions.CudaOrdinal(dev) ?? throw new ApbException($"--device must be cuda or cuda:N (got '{dev}')");
            int? reps = r.GetValue(repeats);
            if (reps is < 1) throw new ApbException($"--repeats must be at least 1 (got {reps})");
            int warm = r.GetValue(warmupMs);
            if (warm < 0) throw new ApbException($"--warmup-ms must be >= 0 (got {warm})");
            int roundCount = r.GetValue(rounds);
            if (roundCount < 1) throw new ApbException($"--rounds must be at least 1 (got {roundCount})");
            int extra = r.GetValue(extraKeys);
            if (extra < 0) throw new ApbException($"--extra-keys must be >= 0 (got {extra})");
            return new KernelBenchSettings
            {
                Name = name, Sizes = r.GetValue(lengths) is { } l ? [.. Eval.SampleGenerator.ParseLengths(l, "--lengths")] : null,
                Repeats = reps, WarmupMs = warm, Rounds = roundCount, Out = CommonOptions.BenchOutput(r.GetValue(output), "bench kernel"), Device = ordinal,
                Variants = r.GetValue(variants)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                Masks = r.GetValue(mask) switch
                {
                    "causal" => [AttentionMask.Causal],
                    "none" => [AttentionMask.None],
                    "both" => null,
                    var m => throw new ApbException($"--mask must be causal, none or both (got '{m}')"),
                },
                ExtraKeys = extra, CommandLine = CommandLine(r),
            };
        };
    }
}
