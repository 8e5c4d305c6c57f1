using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Apb.Backends;
using Apb.Backends.Cuda;
using Apb.Checkpoints;
using Apb.Comms;
using Apb.Diagnostics;
using Apb.Engine;
using Apb.Model;
using Apb.Strategies;
using Apb.Strategies.Apb;
using Apb.Runtime;
using Apb.Runtime.Launch;

namespace Apb.Cli.Commands;

/// <summary>
/// `apb bench prefill`: prefill seconds per strategy and context length on a random-weight model of a named shape (or a
/// checkpoint), with the slowest rank's per-phase breakdown, per-rank imbalance and peak device memory; JSON and a
/// markdown table. `apb bench attention`: our causal attention kernel alone, timed with CUDA events.
/// On GPUs the ranks are processes: `apb launch --nproc-per-node N -- bench prefill --device cuda ...`; `full` runs
/// without the launcher on one GPU. On the CPU, --ranks N in-process ranks.
/// </summary>
static partial class BenchCommand
{
    public static Command Create(Io io)
    {
        var cmd = new Command("bench", "benchmarks: prefill per strategy and length (bench prefill), the attention kernel (bench attention), decode ms/token (bench decode)");
        cmd.Subcommands.Add(PrefillCommand(io));
        cmd.Subcommands.Add(AttentionCommand(io));
        cmd.Subcommands.Add(DecodeCommand(io));
        return cmd;
    }

    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    // ---------------------------------------------------------------------------------------------------- shared by the benches

    static Option<string?> ShapeOption() => new("--shape") { Description = $"random-weight model shape: {string.Join(" | ", ModelShapes.Names)} (default llama-3.1-8b unless --model)" };
    static Option<string?> ModelOption() => new("--model", "-m") { Description = "a Hugging Face model directory instead of a random-weight shape" };

    /// <summary>
    /// The model a bench runs: a checkpoint folder (its weights loaded on <paramref name="backend"/>), or a random-weight
    /// shape made there. The bundle, when there is one, is the caller's to dispose.
    /// </summary>
    static (ModelBundle? Bundle, ModelConfig Config, LlamaWeights Weights, string Name) OpenModel(string? shape, string? modelDir, IBackend backend, ulong seed)
    {
        if (shape != null && modelDir != null) throw new ApbException("give --shape or --model, not both");
        if (modelDir != null)
        {
            var bundle = ModelBundle.Open(modelDir);
            return (bundle, bundle.Config, LlamaWeights.Load(bundle.Config, bundle.Checkpoint, backend), modelDir);
        }
        string name = shape ?? "llama-3.1-8b";
        var config = ModelShapes.Get(name);
        return (null, config, RandomWeights.Create(config, backend, seed), name);
    }

    /// <summary>Token ids of a case: the same for a seed and length on every rank and in every run.</summary>
    static Random CaseRandom(ulong seed, int n) => new(unchecked((int)seed) ^ n);

    /// <summary>The median of timed runs (the mean of the middle two for an even count); NaN for none.</summary>
    static double Median(IEnumerable<double> xs)
    {
        var a = xs.Order().ToArray();
        if (a.Length == 0) return double.NaN;
        return a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
    }

    /// <summary>Text for a markdown table cell.</summary>
    static string Md(string? s) => s is null ? "" : s.Replace("|", "\\|").Replace("\n", " ");

    // ---------------------------------------------------------------------------------------------------- prefill

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
        var query = new Option<int>("--query", "-q") { Description = "query tokens after the context (APB puts them in its anchor)", DefaultValueFactory = _ => 64 };
        var output = new Option<string?>("--out", "-o") { Description = "folder for prefill.json and prefill.md (default bench/results/prefill-<utc stamp>)" };
        var seed = new Option<ulong>("--seed") { Description = "weights and token ids", DefaultValueFactory = _ => 1 };
        var peak = new Option<double>("--peak-tflops") { Description = "bf16 rate per GPU for the FLOP floor (measured cuBLAS 8192^3 on the H200)", DefaultValueFactory = _ => 790 };
        var instrumented = new Option<bool>("--no-profile") { Description = "skip the instrumented run (per-phase breakdown)" };
        var cmd = new Command("prefill", "prefill seconds per strategy and context length, per-phase breakdown, imbalance, peak memory. " +
            "Ring/zigzag overlap each K/V transfer with the block attention and APB its all-gather with the anchor attention; " +
            "APB_OVERLAP=0 in the environment serializes them instead, to measure what overlap buys (recorded in the output)")
        {
            shape, model, strategies, lengths, ranks, device, warmup, repeats, budget, query, output, seed, peak, instrumented,
        };
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            var o = new PrefillBench.Settings
            {
                Shape = r.GetValue(shape), Model = r.GetValue(model),
                Strategies = r.GetValue(strategies)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                    .Select(StrategyOptions.ParseStrategy).ToArray(),
                Lengths = [.. Eval.SampleGenerator.ParseLengths(r.GetValue(lengths)!, "--lengths")],
                Ranks = r.GetValue(ranks), Device = r.GetValue(device)!,
                Warmup = Math.Max(0, r.GetValue(warmup)), Repeats = Math.Max(1, r.GetValue(repeats)), RepeatBudget = r.GetValue(budget),
                Query = Math.Max(0, r.GetValue(query)),
                Out = r.GetValue(output) ?? Path.Combine("bench", "results", $"prefill-{DateTime.UtcNow:yyyyMMdd-HHmmss}"),
                Seed = r.GetValue(seed), PeakTflops = r.GetValue(peak), Profile = !r.GetValue(instrumented),
                CommandLine = "apb bench prefill " + string.Join(' ', r.Tokens.Select(t => t.Value)),
            };
            if (o.Strategies.Length == 0) throw new ApbException("--strategies is empty");
            using var bench = new PrefillBench(o, io);
            return bench.Run();
        }));
        return cmd;
    }

    /// <summary>One (strategy, length) result.</summary>
    sealed record CaseResult
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
        public double[][]? Profiles { get; init; }            // per rank: phase ms..., total ms, sent MB, recv MB, attn GFLOP
        public double Median => BenchCommand.Median(Seconds);
    }

    sealed class PrefillBench : IDisposable
    {
        public sealed record Settings
        {
            public string? Shape, Model;
            public required StrategyKind[] Strategies;
            public required int[] Lengths;
            public int? Ranks;
            public required string Device;
            public int Warmup, Repeats, Query;
            public double RepeatBudget, PeakTflops;
            public required string Out;
            public ulong Seed;
            public bool Profile;
            public required string CommandLine;
        }

        static readonly int K = Profile.Phases.Length + 4;
        readonly Settings _o;
        readonly Io _io;
        readonly LaunchEnvironment? _env = LaunchEnvironment.Current;
        readonly IBackend _backend;
        readonly CudaBackend? _cuda;
        // The ranks: one group per rank count in this process, or this process's rank of a launched group (_launched).
        readonly Dictionary<int, RankGroup> _groups = new();
        RankGroup? _launched;
        readonly List<IBackend> _extraBackends = [];
        ModelBundle? _bundle;
        ModelConfig _config = null!;
        LlamaWeights _weights = null!;
        string _modelName = "";
        readonly List<CaseResult> _results = [];
        readonly Stopwatch _clock = Stopwatch.StartNew();

        public PrefillBench(Settings o, Io io)
        {
            _o = o; _io = io;
            if (_env != null) ProcessGroup.DieWithLauncher(_env);
            _backend = CommonOptions.Backend(o.Device);
            _cuda = _backend as CudaBackend;
        }

        bool Reports => _launched?.IsLeader ?? true;

        void Log(string line)
        {
            if (Reports) { _io.Err.WriteLine($"[bench {_clock.Elapsed.TotalSeconds,6:F1}s] {line}"); _io.Err.Flush(); }
        }

        public int Run()
        {
            if (_env != null && _cuda == null)
                throw new ApbException($"apb launch runs one rank per GPU: pass --device cuda (got {_o.Device}); CPU ranks run in one process with --ranks N");
            var sw = Stopwatch.StartNew();
            (_bundle, _config, _weights, _modelName) = OpenModel(_o.Shape, _o.Model, _backend, _o.Seed);
            if (_env != null)
            {
                var options = new StrategyOptions
                {
                    Strategy = StrategyKind.Ring, Ranks = _env.WorldSize, FallbackBelow = 0, PadTokenId = 0,
                    CollectiveTimeout = _env.CollectiveTimeout ?? InProcessGroup.DefaultTimeout,
                };
                _launched = ProcessGroup.Open(_config, _weights, _backend, options, _env);
                // Ranks 1..: serve rank 0's commands (it runs every case) until it is done.
                if (!_launched.IsLeader) { _launched.Follow(); return 0; }
            }
            Log($"{_modelName}: {_config.ParameterCount / 1e9:F2}B parameters on {_backend.Name} in {sw.Elapsed.TotalSeconds:F1} s" +
                (_launched != null ? $", rank 0 of {_launched.WorldSize} (NCCL)" : ""));

            foreach (int n in _o.Lengths)
                foreach (var s in _o.Strategies)
                {
                    var result = RunCase(s, n);
                    _results.Add(result);
                    Log($"{Describe(result)}");
                    if (Reports) Write();
                }
            // Written after every case above (a crash keeps what was measured); here only the table for the terminal.
            if (Reports)
            {
                _io.Out.Write(Markdown());
                _io.Out.WriteLine($"wrote {Path.Combine(_o.Out, "prefill.json")} and prefill.md");
            }
            return _results.Any(r => r.Status == "error") ? 1 : 0;
        }

        static string Name(StrategyKind s) => s.ToString().ToLowerInvariant();

        string Describe(CaseResult r) => r.Status == "ok"
            ? $"{r.Strategy} n={r.Length} x{r.Ranks}: {r.Median:F3} s (median of {r.Seconds.Count}: {string.Join(", ", r.Seconds.Select(x => x.ToString("F3", Inv)))})" +
              (r.PeakGiB is { } p ? $", peak {string.Join("/", p.Select(x => x.ToString("F1", Inv)))} GiB" : "")
            : $"{r.Strategy} n={r.Length}: {r.Status}: {r.Note}";

        int RanksFor(StrategyKind s) => s == StrategyKind.Full ? 1 : _launched?.WorldSize ?? _o.Ranks ?? 2;

        /// <summary>
        /// The ranks a case runs on: the launched group, or a group of threads of this process made once per rank count
        /// (rank 0 on the bench's own backend, the others on backends of the same device, sharing the weights).
        /// </summary>
        RankGroup GroupFor(int ranks)
        {
            if (_launched != null) return _launched;
            if (_groups.TryGetValue(ranks, out var g)) return g;
            var options = new StrategyOptions
            {
                Strategy = ranks == 1 ? StrategyKind.Full : StrategyKind.Ring, Ranks = ranks, FallbackBelow = 0, PadTokenId = 0,
            };
            return _groups[ranks] = RankGroup.Create(_config, options, r =>
            {
                if (r == 0) return _backend;
                var b = CommonOptions.Backend(_o.Device);
                _extraBackends.Add(b);
                return b;
            }, _ => _weights, ownsBackends: false);
        }

        CaseResult RunCase(StrategyKind s, int n)
        {
            int ranks = RanksFor(s);
            var baseResult = new CaseResult { Strategy = Name(s), Length = n, Ranks = ranks };
            CaseResult Skip(string why, string status = "skipped") => baseResult with { Status = status, Note = why };
            if (_launched != null && s == StrategyKind.Full) return Skip("full runs on one GPU: run bench prefill --strategies full without apb launch");
            if (_o.Ranks is int given && _launched != null && given != _launched.WorldSize)
                throw new ApbException($"--ranks {given} differs from the {_launched.WorldSize} processes launched");
            if (s == StrategyKind.Ulysses && StrategyOptions.UlyssesProblem(_config.NumKeyValueHeads, ranks) is { } why) return Skip(why);
            if (_launched?.Failure is { } dead) return Skip($"the group failed in an earlier case ({dead})");
            if ((long)n + _o.Query > _config.MaxPositionEmbeddings) return Skip($"{n} + {_o.Query} tokens exceed max_position_embeddings {_config.MaxPositionEmbeddings}");

            var group = GroupFor(ranks);
            var options = group.Options with { Strategy = s, Ranks = ranks };
            var rng = CaseRandom(_o.Seed, n);
            var context = Enumerable.Range(0, n).Select(_ => rng.Next(_config.VocabSize)).ToArray();
            var query = Enumerable.Range(0, Math.Max(_o.Query, 1)).Select(_ => rng.Next(_config.VocabSize)).ToArray();
            string? plan = s switch
            {
                StrategyKind.Apb => ApbLengths(n, ranks, query.Length),
                _ => null,
            };
            baseResult = baseResult with { Plan = plan };

            // Device memory: predicted per rank, and refused on every rank together when any one would not fit.
            double? need = null;
            if (_cuda != null)
            {
                long bytes = EstimateBytes(s, n, query.Length, ranks);
                need = bytes / (double)(1L << 30);
                // Ranks of one process share a device: each needs its bytes out of what that device has.
                var memory = group.Memory();
                long sharing = _launched != null ? 1 : ranks;
                for (int r = 0; r < memory.Count; r++)
                    if (bytes * sharing > memory[r].AvailableBytes * 0.95)
                        return baseResult with
                        {
                            Status = "oom", NeedGiB = need,
                            Note = $"OOM: needs {bytes * sharing / (double)(1L << 30):F1} GiB on rank {r}'s device, has {memory[r].AvailableBytes / (double)(1L << 30):F1} GiB free (predicted; not run)",
                        };
            }

            var seconds = new List<double>();
            var peaks = new double[ranks];
            double[][]? profiles = null;
            double[]? rankSeconds = null;
            try
            {
                if (_o.Profile)
                {
                    var profiled = Once(group, options with { Timings = true }, context, query, peaks);
                    profiles = profiled.Profiles;
                    // A profiled run synchronizes at every phase: its per-rank totals say where each rank spent its time.
                    rankSeconds = profiles!.Select(p => p[Profile.Phases.Length] / 1000).ToArray();
                }
                for (int w = 0; w < _o.Warmup; w++) Once(group, options, context, query, peaks);
                double spent = 0;
                for (int i = 0; i < _o.Repeats; i++)
                {
                    var run = Once(group, options, context, query, peaks);
                    seconds.Add(run.Seconds);
                    spent += run.Seconds;
                    if (_o.RepeatBudget > 0 && spent >= _o.RepeatBudget) break;
                }
            }
            catch (ApbException e)
            {
                bool oom = Backends.Cuda.DeviceOutOfMemoryException.In(e);
                return baseResult with
                {
                    Status = oom ? "oom" : "error", NeedGiB = need,
                    Note = (oom ? "OOM: " : "") + e.Message + (need is double g ? $" (predicted need {g:F1} GiB)" : ""),
                    Seconds = seconds,
                };
            }
            return baseResult with
            {
                Seconds = seconds, RankSeconds = rankSeconds, Profiles = profiles, NeedGiB = need,
                PeakGiB = _cuda != null ? peaks : null,
            };
        }

        string ApbLengths(int n, int ranks, int q)
        {
            int a = ApbDefaults.Anchor(n, ranks, insertAt: 0, q), p = ApbDefaults.For(n, ranks).Passing;
            return $"l_a {a}, l_p {p}";
        }

        sealed record RunResult(double Seconds, double[][]? Profiles);

        /// <summary>
        /// One prefill on the group, timed on rank 0 from the call to its logits (which need every rank's part: the query's
        /// star phase gathers from all of them), then released. Per rank: the profile when timed, and the peak memory.
        /// </summary>
        RunResult Once(RankGroup group, StrategyOptions options, int[] context, int[] query, double[] peaks)
        {
            group.Memory(resetPeak: true);
            var sw = Stopwatch.StartNew();
            var r = group.Prefill(new PrefillRequest(context, query, AnchorInsertAt: 0, DecodeBudget: 0, Options: options));
            double secs = sw.Elapsed.TotalSeconds;
            double[][]? profiles = null;
            try
            {
                if (options.Timings)
                    profiles = group.Reports(r.Sequence).Select(x => x.Prefill!).Select(p => Profile.Phases.Select(ph => p.Times.GetValueOrDefault(ph).TotalMilliseconds)
                        .Concat([p.Total.TotalMilliseconds, p.BytesSent / 1e6, p.BytesReceived / 1e6, p.AttentionFlops / 1e9]).ToArray()).ToArray();
            }
            finally { group.Release([r.Sequence]); }
            var memory = group.Memory();
            for (int i = 0; i < Math.Min(peaks.Length, memory.Count); i++) peaks[i] = Math.Max(peaks[i], memory[i].PeakBytes / (double)(1L << 30));
            return new RunResult(secs, profiles);
        }

        /// <summary>
        /// Bytes one rank needs beyond the weights, generously: the model's per-call workspace for its local rows, the KV
        /// caches it keeps, and the attention's key-side buffers three times over (received blocks, LSE merges, outputs).
        /// </summary>
        long EstimateBytes(StrategyKind s, int n, int q, int ranks)
        {
            var c = _config;
            long lb = (n + ranks - 1) / ranks;
            var (anchor, passing) = ApbDefaults.For(n, ranks);
            long rows = s switch
            {
                StrategyKind.Full => n + q,
                StrategyKind.Star => 2 * lb,
                StrategyKind.Apb => lb + ApbDefaults.Anchor(n, ranks, insertAt: 0, q),
                _ => lb,
            };
            long keys = s switch
            {
                StrategyKind.Full or StrategyKind.Ulysses => n + q,
                StrategyKind.Apb => rows + (ranks - 1) * (long)passing,
                StrategyKind.Star => rows,
                _ => 2 * lb,
            };
            long workspace = rows * (3L * c.HiddenSize + 2L * c.QDim + 2L * c.KvDim + 2L * c.IntermediateSize) * 2;
            // K and V of every layer, reserved once (KvCache.Reserve: the regrow that once left old and new caches alive
            // together is gone). Against bench/results/prefill-20261128-152251 (8B shape, 2 H200, 128K; peaks there include
            // the ~15 GiB of weights): this estimate is ~18 GiB for APB against a measured 15.2 beyond the weights, ~26 for
            // Star against 20.7, ~34 for full against 28.9.
            long cache = c.NumHiddenLayers * (long)(s == StrategyKind.Full ? n + q + 64 : lb + q) * 2 * c.KvDim * 2;
            long attention = 3 * keys * (c.QDim + 2L * c.KvDim) * 2 + 2 * rows * c.NumAttentionHeads * 4L;
            long logits = (long)q * c.VocabSize * 4;
            return workspace + cache + attention + logits + (1L << 30);
        }

        // ------------------------------------------------------------------------------------------------ numbers

        /// <summary>FLOPs of an exact causal prefill of t tokens: 2 x layer parameters per token + causal attention.</summary>
        double ExactFlops(long t)
        {
            var c = _config;
            double layerParams = (double)c.HiddenSize * (c.QDim + 2.0 * c.KvDim) + (double)c.QDim * c.HiddenSize + 3.0 * c.HiddenSize * c.IntermediateSize;
            return 2 * c.NumHiddenLayers * layerParams * t + 2.0 * c.NumHiddenLayers * c.NumAttentionHeads * c.HeadDim * (double)t * t;
        }

        static bool Exact(string s) => s is "full" or "ring" or "zigzag" or "ulysses";

        double? FloorSeconds(CaseResult r) => Exact(r.Strategy) && _cuda != null
            ? ExactFlops(r.Length + Math.Max(_o.Query, 1)) / (r.Ranks * _o.PeakTflops * 1e12) : null;

        static int Slowest(double[][] p) => Enumerable.Range(0, p.Length).MaxBy(r => p[r][Profile.Phases.Length]);

        static double Imbalance(IEnumerable<double> xs)
        {
            var a = xs.ToArray();
            double mean = a.Average();
            return mean > 0 ? a.Max() / mean : 1;
        }

        int CommIndex => Array.IndexOf(Profile.Phases, "communication");

        string Markdown()
        {
            var sb = new StringBuilder();
            string dev = _cuda != null ? $"{_cuda.Context.Device.Name}" : _backend.Name;
            sb.AppendLine($"## apb bench prefill: {_modelName}, query {_o.Query} tokens, {dev}, transfer overlap {(StrategyOptions.OverlapFromEnvironment ? "on" : "off (APB_OVERLAP=0)")}");
            sb.AppendLine();
            sb.AppendLine("| strategy | context | ranks | APB lengths | prefill s (median, runs) | tok/s | floor fraction | slowest rank ms: qkv / scoring / comm / attn / o_proj / ffn / other | rank totals ms | imbalance total (busy) | peak GiB per rank | note |");
            sb.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
            foreach (var r in _results)
            {
                string F(double x, string f = "F3") => x.ToString(f, Inv);
                if (r.Status != "ok")
                {
                    sb.AppendLine($"| {r.Strategy} | {r.Length} | {r.Ranks} | {r.Plan ?? "-"} | {r.Status} | - | - | - | - | - | - | {Md(r.Note)} |");
                    continue;
                }
                double med = r.Median;
                string floor = FloorSeconds(r) is double fl ? F(fl / med, "F2") : "-";
                string phases = "-", totals = "-", imbalance = "-";
                if (r.Profiles is { } p)
                {
                    int slow = Slowest(p);
                    phases = $"r{slow}: " + string.Join(" / ", Enumerable.Range(0, Profile.Phases.Length).Select(i => F(p[slow][i], "F0")));
                    totals = string.Join(" / ", p.Select(x => F(x[Profile.Phases.Length], "F0")));
                    imbalance = $"{F(Imbalance(p.Select(x => x[Profile.Phases.Length])), "F2")} ({F(Imbalance(p.Select(x => x[Profile.Phases.Length] - x[CommIndex])), "F2")})";
                }
                string peak = r.PeakGiB is { } pk ? string.Join(" / ", pk.Select(x => F(x, "F1"))) : "-";
                sb.AppendLine($"| {r.Strategy} | {r.Length} | {r.Ranks} | {r.Plan ?? "-"} | {F(med)} ({r.Seconds.Count}) | {F((r.Length + Math.Max(_o.Query, 1)) / med, "F0")} | {floor} | {phases} | {totals} | {imbalance} | {peak} | {Md(r.Note)} |");
            }
            sb.AppendLine();
            sb.AppendLine($"floor fraction: exact strategies only, {_o.PeakTflops:F0} TFLOP/s per GPU x ranks against 2 x parameters x tokens + causal attention FLOPs. " +
                          "Busy = total minus communication (which includes waiting for peers). Phase times come from a separate instrumented run (synchronized at phase edges); the timed runs are not instrumented.");
            return sb.ToString();
        }


        void Write()
        {
            Directory.CreateDirectory(_o.Out);
            File.WriteAllText(Path.Combine(_o.Out, "prefill.md"), Markdown());
            using var fs = File.Create(Path.Combine(_o.Out, "prefill.json"));
            using var w = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
            var c = _config;
            w.WriteStartObject();
            w.WriteString("command", _o.CommandLine);
            w.WriteString("model", _modelName);
            w.WriteStartObject("shape");
            w.WriteNumber("layers", c.NumHiddenLayers); w.WriteNumber("hidden", c.HiddenSize); w.WriteNumber("heads", c.NumAttentionHeads);
            w.WriteNumber("kv_heads", c.NumKeyValueHeads); w.WriteNumber("head_dim", c.HeadDim); w.WriteNumber("intermediate", c.IntermediateSize);
            w.WriteNumber("vocab", c.VocabSize); w.WriteNumber("parameters", c.ParameterCount);
            w.WriteEndObject();
            w.WriteString("device", _cuda != null ? _cuda.Context.Device.Name : _backend.Name);
            w.WriteNumber("world_size", _launched?.WorldSize ?? 1);
            w.WriteNumber("query_tokens", _o.Query);
            w.WriteBoolean("overlap", StrategyOptions.OverlapFromEnvironment);
            w.WriteNumber("warmup", _o.Warmup); w.WriteNumber("repeats", _o.Repeats); w.WriteNumber("repeat_budget_s", _o.RepeatBudget);
            w.WriteNumber("peak_tflops", _o.PeakTflops);
            w.WriteStartArray("phases");
            foreach (var ph in Profile.Phases) w.WriteStringValue(ph);
            w.WriteEndArray();
            w.WriteStartArray("results");
            foreach (var r in _results)
            {
                w.WriteStartObject();
                w.WriteString("strategy", r.Strategy); w.WriteNumber("length", r.Length); w.WriteNumber("ranks", r.Ranks);
                w.WriteString("status", r.Status);
                if (r.Note != null) w.WriteString("note", r.Note);
                if (r.Plan != null) w.WriteString("plan", r.Plan);
                if (r.NeedGiB is double need) w.WriteNumber("predicted_need_gib", Math.Round(need, 2));
                if (r.Seconds.Count > 0)
                {
                    w.WriteNumber("seconds", r.Median);
                    Array("seconds_runs", r.Seconds);
                    w.WriteNumber("tokens_per_s", (r.Length + Math.Max(_o.Query, 1)) / r.Median);
                    if (FloorSeconds(r) is double fl) { w.WriteNumber("floor_seconds", fl); w.WriteNumber("floor_fraction", fl / r.Median); }
                }
                if (r.RankSeconds is { } rs) Array("rank_seconds", rs);
                if (r.PeakGiB is { } pk) Array("peak_gib", pk);
                if (r.Profiles is { } p)
                {
                    int slow = Slowest(p);
                    w.WriteStartObject("profile");
                    w.WriteNumber("slowest_rank", slow);
                    w.WriteStartObject("slowest_phases_ms");
                    for (int i = 0; i < Profile.Phases.Length; i++) w.WriteNumber(Profile.Phases[i], p[slow][i]);
                    w.WriteEndObject();
                    Array("rank_total_ms", p.Select(x => x[Profile.Phases.Length]));
                    Array("rank_busy_ms", p.Select(x => x[Profile.Phases.Length] - x[CommIndex]));
                    Array("rank_sent_mb", p.Select(x => x[Profile.Phases.Length + 1]));
                    Array("rank_attention_gflop", p.Select(x => x[Profile.Phases.Length + 3]));
                    w.WriteNumber("imbalance", Imbalance(p.Select(x => x[Profile.Phases.Length])));
                    w.WriteNumber("busy_imbalance", Imbalance(p.Select(x => x[Profile.Phases.Length] - x[CommIndex])));
                    w.WriteStartArray("rank_phases_ms");
                    foreach (var x in p)
                    {
                        w.WriteStartArray();
                        for (int i = 0; i < Profile.Phases.Length; i++) w.WriteNumberValue(x[i]);
                        w.WriteEndArray();
                    }
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();

            void Array(string name, IEnumerable<double> xs)
            {
                w.WriteStartArray(name);
                foreach (var x in xs) w.WriteNumberValue(double.IsFinite(x) ? x : 0);
                w.WriteEndArray();
            }
        }

        public void Dispose()
        {
            _launched?.Dispose();
            foreach (var g in _groups.Values) g.Dispose();
            foreach (var b in _extraBackends) b.Dispose();
            _backend.Dispose();
            _bundle?.Dispose();
        }
    }

    // ---------------------------------------------------------------------------------------------------- attention

    static Command AttentionCommand(Io io)
    {
        var lengths = new Option<string>("--lengths") { Description = "sequence lengths", DefaultValueFactory = _ => "16k,64k,128k" };
        var device = CommonOptions.Device();
        device.DefaultValueFactory = _ => "cuda";
        var heads = new Option<int>("--heads") { Description = "query heads", DefaultValueFactory = _ => 32 };
        var kvHeads = new Option<int>("--kv-heads") { Description = "KV heads", DefaultValueFactory = _ => 8 };
        var headDim = new Option<int>("--head-dim") { Description = "head dimension", DefaultValueFactory = _ => 128 };
        var repeats = new Option<int>("--repeats") { Description = "timed calls per length (median)", DefaultValueFactory = _ => 5 };
        var output = new Option<string?>("--out", "-o") { Description = "write attention.json to this folder" };
        var maskOpt = new Option<string>("--mask") { Description = "causal (bottom-right aligned) or none", DefaultValueFactory = _ => "causal" };
        var extraKeys = new Option<int>("--extra-keys") { Description = "keys beyond the N query rows (APB's passing block: Tk = N + this)", DefaultValueFactory = _ => 0 };
        var cmd = new Command("attention", "time our attention kernel (CUDA events, median): TFLOP/s with FlashAttention's 4 d heads x (visible pairs), N^2 / 2 when causal")
        {
            lengths, device, heads, kvHeads, headDim, repeats, output, maskOpt, extraKeys,
        };
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            if (CommonOptions.Backend(r.GetValue(device)!) is not CudaBackend gpu)
                throw new ApbException("bench attention times the CUDA kernel: pass --device cuda");
            using var _ = gpu;
            int h = r.GetValue(heads), kv = r.GetValue(kvHeads), d = r.GetValue(headDim), reps = Math.Max(1, r.GetValue(repeats));
            var mask = r.GetValue(maskOpt) switch
            {
                "causal" => AttentionMask.Causal,
                "none" => AttentionMask.None,
                var m => throw new ApbException($"--mask must be causal or none (got '{m}')"),
            };
            int extra = r.GetValue(extraKeys);
            if (extra < 0) throw new ApbException($"--extra-keys must be >= 0 (got {extra})");
            var rows = new List<(int N, double Median, double Min, double Tflops)>();
            foreach (int n in Eval.SampleGenerator.ParseLengths(r.GetValue(lengths)!, "--lengths"))
            {
                using var q = gpu.Allocate(n, h * d, CudaDType.BF16);
                using var k = gpu.Allocate(n + extra, kv * d, CudaDType.BF16);
                using var v = gpu.Allocate(n + extra, kv * d, CudaDType.BF16);
                using var o = gpu.Allocate(n, h * d, CudaDType.BF16);
                using var l = gpu.AllocateF32(n, h);
                // Inputs of the size of real q/k (|x| ~ 1): scores spread, not all equal.
                RandomFill.Fill(q, 7, 1, 1f); RandomFill.Fill(k, 7, 2, 1f); RandomFill.Fill(v, 7, 3, 1f);
                var (med, min) = GpuTiming.MedianMs(gpu, () => gpu.Attention(q, k, v, h, kv, mask, o, l), reps);
                double pairs = mask == AttentionMask.Causal ? (double)n * extra + (double)n * n / 2 : (double)n * (n + extra);
                double flops = 4.0 * d * h * pairs;
                rows.Add((n, med, min, flops / (med * 1e-3) / 1e12));
                io.Err.WriteLine($"attention N={n}: {med:F3} ms median, {rows[^1].Tflops:F1} TFLOP/s");
            }
            string shape = (mask == AttentionMask.Causal ? "causal" : "full") + (extra > 0 ? $", +{extra} keys" : "");
            io.Out.WriteLine($"| kernel | N | heads q/kv | d | mask | median ms | min ms | TFLOP/s |");
            io.Out.WriteLine("|---|---|---|---|---|---|---|---|");
            foreach (var x in rows)
                io.Out.WriteLine($"| apb {AttentionKernels.Name(gpu.AttentionKernel)} | {x.N} | {h}/{kv} | {d} | {shape} | {x.Median.ToString("F3", Inv)} | {x.Min.ToString("F3", Inv)} | {x.Tflops.ToString("F1", Inv)} |");
            if (r.GetValue(output) is { } dir)
            {
                Directory.CreateDirectory(dir);
                using var fs = File.Create(Path.Combine(dir, "attention.json"));
                using var w = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
                w.WriteStartObject();
                w.WriteString("device", gpu.Context.Device.Name);
                w.WriteString("kernel", AttentionKernels.Name(gpu.AttentionKernel));
                w.WriteString("mask", mask == AttentionMask.Causal ? "causal" : "none");
                w.WriteNumber("extra_keys", extra);
                w.WriteStartArray("results");
                foreach (var x in rows)
                {
                    w.WriteStartObject();
                    w.WriteNumber("n", x.N); w.WriteNumber("heads", h); w.WriteNumber("kv_heads", kv); w.WriteNumber("head_dim", d);
                    w.WriteNumber("median_ms", x.Median); w.WriteNumber("min_ms", x.Min); w.WriteNumber("tflops", x.Tflops);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            return 0;
        }));
        return cmd;
    }
}
