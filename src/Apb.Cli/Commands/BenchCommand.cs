using System.CommandLine;
using Apb.Bench.Prefill;
using Apb.Model;
using Apb.Strategies;

namespace Apb.Cli.Commands;

/// <summary>
/// `apb bench`: option parsing for the benchmarks of src/Apb.Bench. prefill (per strategy and length), decode
/// (ms/token after a prompt), kernel NAME (one timing harness per kernel family; `bench attention` is
/// `bench kernel attention`). Each builds a settings record and calls the library.
/// </summary>
static partial class BenchCommand
{
    public static Command Create(Io io)
    {
        var cmd = new Command("bench", "benchmarks: prefill per strategy and length (bench prefill), decode ms/token (bench decode), " +
                                       "one kernel family's timing harness (bench kernel NAME; bench attention = bench kernel attention)");
        cmd.Subcommands.Add(PrefillCommand(io));
        cmd.Subcommands.Add(DecodeCommand(io));
        cmd.Subcommands.Add(KernelCommand(io));
        cmd.Subcommands.Add(AttentionCommand(io));
        return cmd;
    }

    static Option<string?> ShapeOption() => new("--shape") { Description = $"random-weight model shape: {string.Join(" | ", ModelShapes.Names)} (default llama-3.1-8b unless --model)" };
    static Option<string?> ModelOption() => new("--model", "-m") { Description = "a Hugging Face model directory instead of a random-weight shape" };

    /// <summary>The command line as typed (the parse's tokens start at the subcommand: `bench prefill ...`).</summary>
    static string CommandLine(ParseResult r) => "apb " + string.Join(' ', r.Tokens.Select(t => t.Value));

    static int[] Lengths(ParseResult r, Option<string> option) => [.. Eval.SampleGenerator.ParseLengths(r.GetValue(option)!, option.Name)];

    static Command PrefillCommand(Io io)
    {
        var shape = ShapeOption();
        var model = ModelOption();
        var strategies = new Option<string>("--strategies") { Description = "comma-separated: full, ring, zigzag, ulysses, star, apb", DefaultValueFactory = _ => "full,ring,zigzag,ulysses,star,apb" };
        var lengths = new Option<string>("--lengths") { Description = "context lengths, e.g. 32k,64k,128k,256k", DefaultValueFactory = _ => "32k,64k,128k,256k" };
        var ranks = new Option<int?>("--ranks", "-r") { Description = "ranks of the parallel strategies (under apb launch: the processes; on the CPU default 2)" };
        var device = CommonOptions.Device();
        var warmup = new Option<int>("--warmup") { Description = "untimed runs per case besides the instrumented one (which runs first and warms up too)", DefaultValueFactory = _ => 1 };
        var repeats = new Option<int>("--repeats") { Description = "timed runs per case (median reported)", DefaultValueFactory = _ => 3 };
        var budget = new Option<double>("--repeat-budget") { Description = "stop repeating a case once its timed runs add up to this many seconds (0 = always --repeats)", DefaultValueFactory = _ => 0 };
        var query = new Option<int>("--query", "-q") { Description = "query tokens after the context, at least 1 (APB puts them in its anchor)", DefaultValueFactory = _ => 64 };
        var output = new Option<string?>("--out", "-o") { Description = "folder for prefill.json and prefill.md (default bench/results/prefill-<utc stamp>)" };
        var seed = new Option<ulong>("--seed") { Description = "weights and token ids", DefaultValueFactory = _ => 1 };
        var peak = new Option<double>("--peak-tflops") { Description = "bf16 rate per GPU for the FLOP floor (measured cuBLAS 8192^3 on the H200)", DefaultValueFactory = _ => Bench.Timing.H200.AchievableBf16Tflops };
        var noProfile = new Option<bool>("--no-profile") { Description = "skip the instrumented run (per-phase breakdown)" };
        var cmd = new Command("prefill", "prefill seconds per strategy and context length, per-phase breakdown, imbalance, peak memory. " +
            "Ring/zigzag overlap each K/V transfer with the block attention and APB its all-gather with the anchor attention; " +
            "APB_OVERLAP=0 in the environment serializes them instead, to measure what overlap buys (recorded in the output)")
        {
            shape, model, strategies, lengths, ranks, device, warmup, repeats, budget, query, output, seed, peak, noProfile,
        };
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            string dev = r.GetValue(device)!;
            var settings = new PrefillSettings
            {
                Shape = r.GetValue(shape), Model = r.GetValue(model),
                Strategies = r.GetValue(strategies)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                    .Select(StrategyOptions.ParseStrategy).ToArray(),
                Lengths = Lengths(r, lengths),
                Ranks = r.GetValue(ranks), Device = dev, NewBackend = () => CommonOptions.Backend(dev),
                Warmup = Math.Max(0, r.GetValue(warmup)), Repeats = Math.Max(1, r.GetValue(repeats)), RepeatBudget = r.GetValue(budget),
                Query = Math.Max(1, r.GetValue(query)),
                Out = r.GetValue(output) ?? Path.Combine("bench", "results", $"prefill-{DateTime.UtcNow:yyyyMMdd-HHmmss}"),
                Seed = r.GetValue(seed), PeakTflops = r.GetValue(peak), Profile = !r.GetValue(noProfile),
                CommandLine = CommandLine(r),
            };
            using var bench = new PrefillBench(settings, io.Out, io.Err);
            return bench.Run();
        }));
        return cmd;
    }
}
