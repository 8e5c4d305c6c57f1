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
        cmd.Subcommands.Add(ServeCommand(io));
        cmd.Subcommands.Add(KernelCommand(io));
        cmd.Subcommands.Add(AttentionCommand(io));
        return cmd;
    }

    static Option<string?> ShapeOption() => new("--shape") { Description = $"random-weight model shape: {string.Join(" | ", ModelShapes.Names)} (default llama-3.1-8b unless --model)" };
    static Option<string?> ModelOption() => new("--model", "-m") { Description = "a Hugging Face model directory instead of a random-weight shape" };

    /// <summary>The command line as typed (the parse's tokens start at the subcommand: `bench prefill ...`).</summary>
    static string CommandLine(ParseResult r) => "apb " + string.Join(' ', r.Tokens.Select(t => t.Value));

    /// <summary>The lengths given, an error naming the spelling typed (--lengths, --length, --contexts).</summary>
    static int[] Lengths(ParseResult r, Option<string> option) =>
        [.. Eval.SampleGenerator.ParseLengths(r.GetValue(option)!, r.GetResult(option)?.IdentifierToken?.Value ?? option.Name)];

    static Command PrefillCommand(Io io)
    {
        var shape = ShapeOption();
        var model = ModelOption();
        var strategies = new Option<string>("--strategies", "--strategy", "-s") { Description = "comma-separated: full, ring, zigzag, ulysses, star, apb, apb-balanced", DefaultValueFactory = _ => "full,ring,zigzag,ulysses,star,apb" };
        var lengths = CommonOptions.Lengths("context lengths", "32k,64k,128k,256k");
        var ranks = new Option<int?>("--ranks", "-r") { Description = $"ranks of the parallel strategies (default {CommonOptions.DefaultRanks}; under apb launch: the processes)" };
        var device = CommonOptions.Device();
        var warmup = new Option<int>("--warmup") { Description = "untimed runs per case before the instrumented one (which then profiles warm kernels; with 0 it runs first and warms the timed runs)", DefaultValueFactory = _ => 1 };
        var repeats = new Option<int>("--repeats") { Description = "timed runs per case (median reported)", DefaultValueFactory = _ => 3 };
        var budget = new Option<double>("--repeat-budget") { Description = "stop repeating a case once its timed runs add up to this many seconds (0 = always --repeats)", DefaultValueFactory = _ => 0 };
        var query = new Option<int>("--query") { Description = "query tokens after the context, at least 1 (APB puts them in its anchor)", DefaultValueFactory = _ => 64 };
        var output = new Option<string?>("--out", "-o") { Description = "folder for prefill.json and prefill.md (default bench/results/prefill-<utc stamp>)" };
        var seed = new Option<ulong>("--seed") { Description = "weights and token ids", DefaultValueFactory = _ => 1 };
        var peak = new Option<double>("--peak-tflops") { Description = "bf16 rate per GPU for the FLOP floor (measured cuBLAS 8192^3 on the H200)", DefaultValueFactory = _ => Bench.Timing.H200.AchievableBf16Tflops };
        var scorer = new Option<string?>("--scorer") { Description = StrategyFlags.ScorerHelp };
        var heads = new Option<string?>("--retaining-heads") { Description = StrategyFlags.HeadsHelp };
        var novelty = StrategyFlags.NoveltyWeightOption();
        var passingBudget = StrategyFlags.PassingBudgetOption();
        var link = new Option<double>("--link-gbps") { Description = "GB/s per direction of the GPU link the modeled multi-GPU prefill assumes (default: NVLink 4 on an H200, 900 GB/s per GPU both ways = 450)", DefaultValueFactory = _ => Bench.Prefill.PrefillModel.NvLink4GBps };
        var noProfile = new Option<bool>("--no-profile") { Description = "skip the instrumented run (per-phase breakdown)" };
        var chart = new Option<string?>("--chart") { Description = "also draw prefill seconds against context length as an SVG chart here" };
        var prefillAttention = CommonOptions.PrefillAttention();
        var quiet = CommonOptions.Quiet();
        var cmd = new Command("prefill", "prefill seconds per strategy and context length, per-phase breakdown, imbalance, peak memory. " +
            "Ring/zigzag overlap each K/V transfer with the block attention and APB its all-gather with the anchor attention; " +
            "APB_OVERLAP=0 in the environment serializes them instead, to measure what overlap buys (recorded in the output)")
        {
            shape, model, strategies, lengths, ranks, device, warmup, repeats, budget, query, output, seed, peak, scorer, heads, novelty, passingBudget, link, noProfile, chart, prefillAttention, quiet,
        };
        cmd.SetAction(r => Cli.Guard(io, r.GetValue(quiet), io =>
        {
            string? chartPath = r.GetValue(chart);
            if (chartPath != null) CommonOptions.CreateOutput(chartPath, "--chart").Dispose();
            string dev = r.GetValue(device)!;
            bool? fp8 = CommonOptions.Fp8Attention(r.GetValue(prefillAttention));
            if (!(r.GetValue(link) > 0)) throw new ApbException($"--link-gbps must be above 0 (GB/s per direction), got {r.GetValue(link)}");
            var settings = new PrefillSettings
            {
                Shape = r.GetValue(shape), Model = r.GetValue(model),
                Strategies = r.GetValue(strategies)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                    .Select(StrategyOptions.ParseStrategy).ToArray(),
                Lengths = Lengths(r, lengths),
                Ranks = r.GetValue(ranks) ?? (Runtime.Launch.LaunchEnvironment.Current is null ? CommonOptions.DefaultRanks : null), Device = dev, NewBackend = () => CommonOptions.Backend(dev, fp8),
                Warmup = Math.Max(0, r.GetValue(warmup)), Repeats = Math.Max(1, r.GetValue(repeats)), RepeatBudget = r.GetValue(budget),
                Query = Math.Max(1, r.GetValue(query)),
                Out = CommonOptions.BenchOutput(r.GetValue(output), "bench prefill") ?? Path.Combine("bench", "results", $"prefill-{DateTime.UtcNow:yyyyMMdd-HHmmss}"),
                Scorer = ScorerChoice.Parse(r.GetValue(scorer)), RetainingHeads = r.GetValue(heads), NoveltyWeight = r.GetValue(novelty),
                PassingBudget = r.GetValue(passingBudget),
                Seed = r.GetValue(seed), PeakTflops = r.GetValue(peak), LinkGBps = r.GetValue(link), Profile = !r.GetValue(noProfile), Chart = chartPath,
                CommandLine = CommandLine(r),
            };
            using var bench = new PrefillBench(settings, io.Out, io.Err, io.Progress(TimeSpan.Zero));
            return bench.Run();
        }));
        return cmd;
    }

    static Command ServeCommand(Io io)
    {
        var url = new Option<string?>("--url") { Description = "a running server's base URL (http://host:port); without it the engine runs in this process" };
        var shape = ShapeOption();
        var model = ModelOption();
        var device = CommonOptions.Device();
        var strategy = new Option<string>("--strategy", "-s") { Description = "engine mode: full | ring | zigzag | ulysses | star | apb", DefaultValueFactory = _ => "full" };
        var ranks = new Option<int?>("--ranks", "-r") { Description = $"engine mode: ranks of the strategy (threads of this process; default 1 for full, {CommonOptions.DefaultRanks} otherwise)" };
        var experiment = new Option<string>("--experiment") { Description = "load (a stream of requests) | batch (decode tok/s alone vs --batch together) | ttft (a long prompt alone vs during --batch decodes)", DefaultValueFactory = _ => "load" };
        var requests = new Option<int>("--requests") { Description = "load: requests to send", DefaultValueFactory = _ => 32 };
        var concurrency = new Option<int>("--concurrency") { Description = "load: requests in flight at once (the cap when --rate is given)", DefaultValueFactory = _ => 8 };
        var rate = new Option<double>("--rate") { Description = "load: requests per second, Poisson arrivals (0 = closed loop at --concurrency)", DefaultValueFactory = _ => 0 };
        var lengths = new Option<string>("--prompt-lengths") { Description = "prompt lengths, used in turn (batch and ttft use the first)", DefaultValueFactory = _ => "1k" };
        var output = new Option<int>("--output-tokens") { Description = "tokens each request generates", DefaultValueFactory = _ => 64 };
        var batch = new Option<int>("--batch") { Description = "batch: requests decoding together; ttft: requests decoding in the background", DefaultValueFactory = _ => 16 };
        var background = new Option<string>("--background-length") { Description = "ttft: the background requests' prompt length", DefaultValueFactory = _ => "8k" };
        var maxBatch = new Option<int>("--max-batch") { Description = "engine mode: the scheduler's largest batch", DefaultValueFactory = _ => 16 };
        var chunk = new Option<int>("--max-num-tokens") { Description = "engine mode: prompt tokens per prefill step (longer prompts go in chunks)", DefaultValueFactory = _ => 8192 };
        var repeats = new Option<int>("--repeats") { Description = "ttft: measurements of each TTFT (median reported)", DefaultValueFactory = _ => 3 };
        var seed = new Option<ulong>("--seed") { Description = "weights and token ids", DefaultValueFactory = _ => 1 };
        var outDir = new Option<string?>("--out", "-o") { Description = "folder for serve.json and serve.md (default bench/results/serve-<utc stamp>)" };
        var serveAttention = CommonOptions.PrefillAttention();
        var serveQuiet = CommonOptions.Quiet();
        var cmd = new Command("serve", "serving benchmark: TTFT and time per output token p50/p99, throughput and errors for a stream of requests " +
            "against a running server (--url) or the engine in this process; --experiment batch|ttft measure batched decode and TTFT under load")
        {
            url, shape, model, device, strategy, ranks, experiment, requests, concurrency, rate, lengths, output, batch, background,
            maxBatch, chunk, repeats, seed, outDir, serveAttention, serveQuiet,
        };
        cmd.SetAction(r => Cli.Guard(io, r.GetValue(serveQuiet), io =>
        {
            var kind = StrategyOptions.ParseStrategy(r.GetValue(strategy)!);
            string dev = r.GetValue(device)!;
            if (r.GetValue(url) is { } u && r.GetValue(serveAttention) is { } a)
                throw new ApbException($"--prefill-attention {a} with --url {u}: the server computes as it was started; give the flag to its `apb serve`, or drop --url to bench the engine here");
            bool? fp8 = CommonOptions.Fp8Attention(r.GetValue(serveAttention));
            var settings = new Bench.Serve.ServeSettings
            {
                Url = r.GetValue(url), Shape = r.GetValue(shape), Model = r.GetValue(model), Device = dev, NewBackend = () => CommonOptions.Backend(dev, fp8),
                Strategy = kind, Ranks = CommonOptions.RanksFor(kind, r.GetValue(ranks)), Experiment = r.GetValue(experiment)!,
                Requests = r.GetValue(requests), Concurrency = r.GetValue(concurrency), Rate = r.GetValue(rate),
                PromptLengths = Lengths(r, lengths), OutputTokens = r.GetValue(output), Batch = r.GetValue(batch),
                BackgroundLength = Lengths(r, background)[0], MaxBatch = r.GetValue(maxBatch), PrefillChunk = r.GetValue(chunk),
                Repeats = Math.Max(1, r.GetValue(repeats)), Seed = r.GetValue(seed),
                Out = CommonOptions.BenchOutput(r.GetValue(outDir), "bench serve") ?? Path.Combine("bench", "results", $"serve-{DateTime.UtcNow:yyyyMMdd-HHmmss}"),
                CommandLine = CommandLine(r),
            };
            return new Bench.Serve.ServeBench(settings, io.Out, io.Err).Run();
        }));
        return cmd;
    }
}
