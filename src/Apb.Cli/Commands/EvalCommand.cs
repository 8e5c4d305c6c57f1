using Apb.Backends;
using System.CommandLine;
using Apb.Bench;
using Apb.Bench.Charts;
using Apb.Engine;
using Apb.Eval;
using Apb.Model;
using Apb.Strategies;
using Apb.Runtime;
using Apb.Tokenization;

namespace Apb.Cli.Commands;

/// <summary>
/// `apb eval generate` writes RULER-style samples (strings + token ids) as JSON lines, for training and inspection;
/// `apb eval ruler` runs them through one or more strategies and prints accuracy per task.
/// </summary>
static partial class EvalCommand
{
    public static Command Create(Io io)
    {
        var cmd = new Command("eval", "RULER-style accuracy: generate samples, or run them through strategies");
        cmd.Subcommands.Add(Generate(io));
        cmd.Subcommands.Add(Ruler(io));
        cmd.Subcommands.Add(Paired(io));
        cmd.Subcommands.Add(Show(io));
        cmd.Subcommands.Add(Coverage(io));
        cmd.Subcommands.Add(Depth(io));
        return cmd;
    }

    /// <summary>
    /// `apb eval paired A.json B.json`: B's task mean minus A's per length, sample by sample (PairedDifference). With
    /// --other-strategy, B's rows of another strategy: APB in one run against full attention in another. More pairs of
    /// files (`A1 B1 A2 B2 ...`, each pair of its own seed) pool their samples into one difference per length.
    /// </summary>
    static Command Paired(Io io)
    {
        var files = new Argument<string[]>("REFERENCE OTHER")
        {
            Description = "`apb eval ruler` JSON files in pairs: the baseline, then another run of the same seed, tasks and lengths; " +
                          "more pairs (other seeds) pool their samples",
            Arity = ArgumentArity.OneOrMore,   // an odd count is refused below, with the reason
        };
        var strategy = new Option<string>("--strategy") { Description = "the strategy whose rows are compared (REFERENCE's, and OTHER's unless --other-strategy)", DefaultValueFactory = _ => "full" };
        var otherStrategy = new Option<string?>("--other-strategy") { Description = "OTHER's strategy, when it is not --strategy (e.g. --strategy full --other-strategy apb: APB against full attention of another run)" };
        var first = new Option<int?>("--samples") { Description = "pair each task's first N samples only: runs of one seed share their first samples whatever their --samples, so a 20-sample run pairs with the start of a 60-sample one" };
        var only = new Option<string?>("--tasks") { Description = "pair these tasks only, a comma list as the files name them (e.g. niah_multikey_1,niah_multikey_2,niah_multikey_3 for a strategy against another on multi-key alone); default: every task both files have" };
        var cmd = new Command("paired", "OTHER's task mean minus REFERENCE's, sample by sample, with a 95 % interval: for runs of one seed that could not share one invocation, and pooled over several seeds' pairs")
        {
            files, strategy, otherStrategy, first, only,
        };
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            string s = r.GetValue(strategy)!;
            string so = r.GetValue(otherStrategy) ?? s;
            var paths = r.GetValue(files)!;
            if (paths.Length % 2 != 0)
                throw new ApbException($"{paths.Length} files: give them in pairs, REFERENCE then OTHER ({string.Join(" ", paths)})");
            HashSet<string>? tasks = r.GetValue(only) is string list ? [.. list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)] : null;
            if (tasks is { Count: 0 }) throw new ApbException("--tasks names no task: give a comma list as the files name them, e.g. niah_multikey_1,niah_multikey_2");
            var runs = new List<(RulerResults A, RulerResults B, PairedDifference.Pair Rows)>();
            for (int i = 0; i < paths.Length; i += 2)
            {
                var fileA = PairedDifference.Read(paths[i], s); var fileB = PairedDifference.Read(paths[i + 1], so);
                PairedDifference.RequireSameSeed(fileA, fileB);
                var pair = r.GetValue(first) is int n
                    ? new PairedDifference.Pair(PairedDifference.FirstSamples(fileB, n), PairedDifference.FirstSamples(fileA, n))
                    : new PairedDifference.Pair(fileB.Rows, fileA.Rows);
                if (tasks is not null)
                {
                    foreach (var file in new[] { fileA, fileB })
                        if (tasks.FirstOrDefault(t => !file.Rows.Any(x => x.Task == t)) is { } missing)
                            throw new ApbException($"--tasks {missing}: {file.Path} has no row of that task (it has {string.Join(", ", file.Rows.Select(x => x.Task).Distinct())})");
                    pair = new PairedDifference.Pair([.. pair.Rows.Where(x => tasks.Contains(x.Task))], [.. pair.Reference.Where(x => tasks.Contains(x.Task))]);
                }
                runs.Add((fileA, fileB, pair));
            }
            PairedDifference.RequireDistinctSeeds([.. runs.Select(x => x.A)]);
            string what = so == s ? s : $"{so} against {s}";
            string minus = runs.Count == 1 ? $"{runs[0].B.Path} minus {runs[0].A.Path}"
                : $"pooled over {runs.Count} pairs (seeds {string.Join(", ", runs.Select(x => x.A.Seed?.ToString() ?? "?"))}), " +
                  string.Join(" + ", runs.Select(x => $"{x.B.Path} minus {x.A.Path}"));
            foreach (var len in runs.SelectMany(x => x.Rows.Rows).Select(x => x.Length).Distinct().Order())
            {
                // A task pairs with the reference's row of its own length, so only OTHER's rows need cutting to one length.
                var atLength = runs.Select(x => x.Rows with { Rows = [.. x.Rows.Rows.Where(y => y.Length == len)] }).ToList();
                var d = PairedDifference.Of(atLength);
                if (d is null) { io.Out.WriteLine($"{len}: no task of {what} pairs up (same task, same sample count) in {minus}"); continue; }
                var moved = PairedDifference.Moved(atLength).Select(t => $"{t.Task} {t.Move.Text}");
                io.Out.WriteLine($"{len}: {minus}, {what}, {d.Tasks} tasks: {d.Text} (95 %); " +
                                 $"tasks that moved: {(moved.Any() ? string.Join(", ", moved) : "none")}; " +
                                 $"samples whose score changed: {PairedDifference.ChangedSamples(atLength)}");
            }
            foreach (var x in runs)
            {
                var differs = PairedDifference.Differences(x.A, x.B);
                if (differs.Count > 0)
                    io.Out.WriteLine($"note: {(runs.Count == 1 ? "the files were" : $"{x.A.Path} and {x.B.Path} were")} made differently ({string.Join("; ", differs)}): the difference above may hold that too");
            }
            return 0;
        }));
        return cmd;
    }

    /// <summary>
    /// `apb eval show FILE...`: each results file's table as `apb eval ruler` printed it at the end of the run (accuracy
    /// and seconds per task, length and strategy, the means, and each strategy minus full attention where the file has
    /// full's rows), after what made it: the command, seed, device and build. For files of earlier sessions, without
    /// running anything again.
    /// </summary>
    static Command Show(Io io)
    {
        var files = new Argument<string[]>("FILE") { Description = "`apb eval ruler` JSON files", Arity = ArgumentArity.OneOrMore };
        var cmd = new Command("show", "print the tables of `apb eval ruler` JSON files, with the command, seed, device and build that made each") { files };
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            foreach (var path in r.GetValue(files)!)
            {
                var f = RulerResults.Read(path);
                io.Out.WriteLine($"{path}: {f.Rows.Count} rows; seed {f.Seed?.ToString() ?? "not recorded"}, " +
                                 $"{f.Device ?? "device not recorded"}, apb {f.Engine ?? "(build not recorded)"}");
                if (f.Command is not null) io.Out.WriteLine($"  {f.Command}");
                foreach (var c in f.EarlierCommands) io.Out.WriteLine($"  (earlier, resumed: {c})");
                io.Out.WriteLine();
                io.Out.Write(f.Rows.Count == 0 ? "(no rows)\n" : RulerHarness.FormatTable(f.Rows));
                foreach (var line in RulerHarness.FormatSettings(f.Rows)) io.Out.WriteLine(line);
                io.Out.WriteLine();
            }
            return 0;
        }));
        return cmd;
    }

    static Option<string> Tasks() => new("--tasks") { Description = "all, niah, or a comma list of: " + string.Join(", ", RulerTasks.All.Select(t => t.Name)), DefaultValueFactory = _ => "all" };
    static Option<string> Length(string dflt) => CommonOptions.Lengths("target tokens (context + query) per sample", dflt);
    static Option<int> Samples(int dflt) => new("--samples") { Description = "samples per task and length", DefaultValueFactory = _ => dflt };
    static Option<int> Seed() => new("--seed") { Description = "samples depend only on (seed, task, length, index)", DefaultValueFactory = _ => 0 };
    static Option<int> Threads() => new("--threads") { Description = "threads generating samples (0 = all cores)", DefaultValueFactory = _ => 0 };

    static Command Generate(Io io)
    {
        var tokenizer = new Option<string?>("--tokenizer") { Description = "folder with tokenizer.json (+ tokenizer_config.json) that measures the length; default: the embedded model's" };
        var tasks = Tasks(); var length = Length("4k"); var samples = Samples(100); var seed = Seed(); var threads = Threads();
        var output = new Option<string>("--out", "-o") { Description = "JSON lines file to write ('-' for stdout)", Required = true };
        var format = new Option<string>("--format") { Description = "jsonl (strings and ids) or ids (task TAB context ids TAB query ids TAB answer ids: compact, for training)", DefaultValueFactory = _ => "jsonl" };
        var cmd = new Command("generate", "write samples as JSON lines: strings and context_ids / query_ids / answer_ids")
        {
            tokenizer, tasks, length, samples, seed, threads, output, format,
        };
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            string fmt = r.GetValue(format)!;
            if (fmt is not ("jsonl" or "ids")) throw new ApbException($"--format {fmt}: expected jsonl or ids");
            var taskList = RulerTasks.Parse(r.GetValue(tasks)!);
            var lengths = SampleGenerator.ParseLengths(r.GetValue(length)!);
            int n = CheckSamples(r.GetValue(samples), taskList, lengths);
            string path = r.GetValue(output)!;
            using var file = CommonOptions.OpenOutput(path, "--out", io);
            var tok = LoadTokenizer(CommonOptions.ResolveModel(r.GetValue(tokenizer)));
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var all = new SampleGenerator(tok).GenerateAll(taskList, lengths, n, r.GetValue(seed), r.GetValue(threads));
            Write(file, all, fmt);
            file.Flush();
            io.Err.WriteLine($"{all.Count} samples ({taskList.Count} task(s) x {lengths.Count} length(s) x {n}), mean {all.Average(s => s.PromptTokens):F0} prompt tokens, in {sw.Elapsed.TotalSeconds:F1} s -> {path}");
            return 0;
        }));
        return cmd;
    }

    /// <summary>
    /// A strategy's label variant with the KV cache's dtype and the prefill attention where they are not the defaults:
    /// "retaining heads, fp8 KV cache, fp8 attention".
    /// </summary>
    static string? WithKv(string? variant, KvCacheDType kv, bool fp8Attention)
    {
        var parts = new List<string>();
        if (variant is not null) parts.Add(variant);
        if (kv != KvCacheDType.Auto) parts.Add($"{kv.Name()} KV cache");
        if (fp8Attention) parts.Add("fp8 attention");
        return parts.Count == 0 ? null : string.Join(", ", parts);
    }

    static Command Ruler(Io io)
    {
        var model = new ModelFlags();
        var tasks = Tasks(); var length = Length("4k"); var samples = Samples(10); var seed = Seed(); var threads = Threads();
        var strategies = new Option<string>("--strategies", "--strategy", "-s") { Description = "comma list of full, ring, zigzag, ulysses, star, apb, apb-balanced", DefaultValueFactory = _ => "full" };
        var ranks = new Option<int>("--ranks", "-r") { Description = "ranks for every strategy but full (in-process ranks: threads, each with its own backend on --device)", DefaultValueFactory = _ => CommonOptions.DefaultRanks };
        var device = CommonOptions.Device();
        var anchor = new Option<int?>("--anchor") { Description = StrategyFlags.AnchorHelp };
        var passing = new Option<int?>("--passing") { Description = StrategyFlags.PassingHelp };
        var scorer = new Option<string?>("--scorer") { Description = StrategyFlags.ScorerHelp };
        var heads = new Option<string?>("--retaining-heads") { Description = StrategyFlags.HeadsHelp };
        var novelty = StrategyFlags.NoveltyWeightOption();
        var anchorQuery = StrategyFlags.AnchorQueryOption();
        var passingFrom = StrategyFlags.PassingFromLayerOption();
        var passingBudget = StrategyFlags.PassingBudgetOption();
        var kvCache = StrategyFlags.KvCacheOption();
        var prefillAttention = CommonOptions.PrefillAttention();
        var json = new Option<string?>("--out", "-o", "--json") { Description = "also write {\"results\": [...]} here (accuracy as a fraction; - for stdout, the table then goes to stderr)" };
        var chart = new Option<string?>("--chart") { Description = "also draw the accuracy as an SVG chart here (bars per task at one length, lines over several lengths)" };
        var quiet = CommonOptions.Quiet();
        var samplesOut = new Option<string?>("--samples-out") { Description = "also write the samples used as JSON lines here" };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "print every sample's output and score to stderr" };
        var resume = new Option<bool>("--resume") { Description = "continue the --out file of a run that stopped (a time limit, Ctrl-C, a failure): its rows of the same strategy and settings, seed, device, model and build of apb are kept and not run again, its other rows stay in the file. A larger --samples than the file's grows its rows: only the samples they lack are run. Without --resume an existing --out file is replaced" };
        var cmd = new Command("ruler", "accuracy per task, length and strategy: same samples for every strategy, greedy decoding")
        {
            tasks, length, samples, seed, threads, strategies, ranks, device, anchor, passing, passingFrom, passingBudget, scorer, heads, novelty, anchorQuery, kvCache, prefillAttention, json, resume, samplesOut, verbose, chart, quiet,
        };
        model.AddTo(cmd);
        cmd.SetAction((r, cancel) => Task.FromResult(Cli.Guard(io, r.GetValue(quiet), io =>
        {
            using var bundle = CommonOptions.OpenModel(model.Get(r), io);
            var taskList = RulerTasks.Parse(r.GetValue(tasks)!);
            var lengths = SampleGenerator.ParseLengths(r.GetValue(length)!);
            foreach (var len in lengths)
                if (len + 64 > bundle.Config.MaxPositionEmbeddings)
                    throw new ApbException($"--length {len} does not fit the model's max_position_embeddings ({bundle.Config.MaxPositionEmbeddings}) with room for the answer: use a shorter length");
            int n = CheckSamples(r.GetValue(samples), taskList, lengths);
            int rankCount = r.GetValue(ranks);
            var kvDType = KvCacheDTypes.Parse(r.GetValue(kvCache));
            bool? fp8 = CommonOptions.Fp8Attention(r.GetValue(prefillAttention));
            if (fp8 == true) Qk8.RequireHeadDim(bundle.Config.HeadDim);
            bool fp8Label = CommonOptions.Fp8AttentionInEffect(fp8);
            var (scorerKind, headsPath) = StrategyFlags.Scorer(r.GetValue(scorer), r.GetValue(heads), bundle.Directory);
            float? noveltyWeight = r.GetValue(novelty);
            ScorerChoice.CheckNoveltyWeight(scorerKind, noveltyWeight);
            bool queryInAnchor = r.GetValue(anchorQuery) ?? true;
            StrategyOptions.CheckAnchorQuery(scorerKind, queryInAnchor);
            StrategyOptions.CheckPassingFromLayer(r.GetValue(passingFrom), bundle.Config);
            int? budget = r.GetValue(passingBudget);
            var specs = r.GetValue(strategies)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(ParseStrategy)
                .Select(k => k == StrategyKind.Full ? new StrategySpec("full", 1, WithKv(null, kvDType, fp8Label))
                    : new StrategySpec(k.Name(), rankCount, WithKv(Variant(k, scorerKind, noveltyWeight, r.GetValue(anchor), r.GetValue(passing), queryInAnchor, r.GetValue(passingFrom), budget), kvDType, fp8Label)))
                .Distinct().ToList();
            if (specs.Count == 0) throw new ApbException("--strategies names no strategy: use e.g. full,star,apb");
            StrategyOptions.CheckPassingBudget(budget, [.. specs.Select(x => ParseStrategy(x.Name))]);

            // Open the device before the samples are made (a missing GPU is said now, not after minutes of generation) and
            // hold it to the end: full attention runs every sample on one model loaded on it (as the server does), and on a
            // GPU it keeps the device's context alive between the other strategies' sessions, which open their own ranks.
            // Output files are created before the run: an unwritable path is said now, not after an hour of evaluation.
            // A file to resume is read first and opened without truncating it, so a refusal below leaves it as it was.
            string? outPath = r.GetValue(json);
            RulerResults? earlier = r.GetValue(resume) ? Resumed(outPath) : null;
            using var jsonFile = outPath is string jp ? CommonOptions.OpenOutput(jp, "--out", io, truncate: earlier is null) : null;
            using var chartFile = r.GetValue(chart) is string cp ? CommonOptions.CreateOutput(cp, "--chart") : null;
            using var samplesFile = r.GetValue(samplesOut) is string sop ? CommonOptions.CreateOutput(sop, "--samples-out") : null;

            string dev = r.GetValue(device)!;
            using var held = CommonOptions.Backend(dev, fp8);
            LlamaModel? fullModel = null;

            // The JSON file holds every finished row as the run goes: a run cut short keeps what it measured, and --resume
            // picks it up from there.
            var run = jsonFile is null ? null : RulerRun.Describe("apb " + string.Join(' ', r.Tokens.Select(t => ShellWord(t.Value))), r.GetValue(seed), dev,
                bundle.Directory, bundle.Checkpoint.Files.Select(f => f.Path), scorerKind.UsesHeads() && specs.Any(x => x.Name == "apb") ? headsPath : null);
            List<RulerRow> kept = [], others = [];
            if (earlier is not null)
            {
                (kept, others) = earlier.ResumeFor(run!, specs, [.. taskList.Select(t => t.Name)], lengths, n);
                run = run! with { EarlierCommands = [.. earlier.EarlierCommands, .. earlier.Command is { } c ? [c] : Array.Empty<string>()] };
                RulerHarness.RewriteJson(jsonFile!, run, [.. others, .. kept], complete: false);
                int grown = kept.Count(k => k.Samples < n);
                io.Err.WriteLine($"--resume {outPath}: {kept.Count - grown} row(s) kept, not run again; " +
                    (grown > 0 ? $"{grown} row(s) of fewer samples kept and grown to {n} (only the samples they lack are run); " : "") +
                    $"{others.Count} row(s) of other strategies, tasks or lengths left in the file");
            }

            var sw = System.Diagnostics.Stopwatch.StartNew();
            var all = new SampleGenerator(bundle.Tokenizer).GenerateAll(taskList, lengths, n, r.GetValue(seed), r.GetValue(threads), cancel);
            io.Err.WriteLine($"model {Path.GetFullPath(bundle.Directory)} on {dev}; {all.Count} samples ({taskList.Count} task(s) x {lengths.Count} length(s) x {n}) generated in {sw.Elapsed.TotalSeconds:F1} s; strategies {string.Join(", ", specs)}");
            if (samplesFile is not null) SampleJsonl.Write(samplesFile, all);

            int pad = bundle.Tokenizer.PadTokenId ?? 0;
            // One resident rank group per strategy (weights loaded once for all its samples), each request a sequence on it.
            var groups = new Dictionary<StrategySpec, RankGroup>();
            using var disposeGroups = new Disposer(() => { foreach (var g in groups.Values) g.Dispose(); });
            IInferenceSession Session(StrategySpec spec, EncodedSample e)
            {
                if (spec.Name == "full") return new LocalSession(fullModel ??= bundle.LoadModel(held), RulerHarness.Capacity(e), kvDType: kvDType);
                if (!groups.TryGetValue(spec, out var group))
                {
                    // A default anchor (null) grows to hold the query plus some context at short lengths (ApbDefaults).
                    // FallbackBelow 0: the point of an accuracy run is the approximation itself, also at short lengths.
                    var options = new StrategyOptions
                    {
                        Strategy = StrategyOptions.ParseStrategy(spec.Name), Ranks = spec.Ranks, AnchorLength = r.GetValue(anchor),
                        PassingLength = r.GetValue(passing), Scorer = scorerKind, NoveltyWeight = noveltyWeight, RetainingHeadsPath = headsPath, FallbackBelow = 0,
                        AnchorQuery = queryInAnchor, PassingFromLayer = r.GetValue(passingFrom),
                        // Only APB reads passed rows: star, ring and the rest run as they would without it.
                        PassingBudget = StrategyOptions.ParseStrategy(spec.Name).IsApb() ? budget : null,
                        PadTokenId = pad, KvCache = kvDType,
                    };
                    groups[spec] = group = RankGroup.Create(bundle.Config, options, _ => CommonOptions.Backend(dev, fp8),
                        b => bundle.LoadWeights(b));
                }
                int prompt = e.ContextIds.Length + e.QueryIds.Length;
                return new GroupSession(group, anchorInsertAt: 0, decodeBudget: RulerHarness.Capacity(e) - prompt);
            }

            bool verb = r.GetValue(verbose);
            // A status line per sample (ETA from the rate so far), a line that stays per task.
            using var progress = io.Progress(TimeSpan.FromSeconds(30));
            long done = 0, total = (long)all.Count * specs.Count - kept.Sum(k => k.Samples);
            var finished = new List<RulerRow>([.. others, .. kept]);
            var rows = RulerHarness.Run(all, specs, Session, bundle.Tokenizer, bundle.StopTokens.ToHashSet(),
                row =>
                {
                    progress.Line($"{row.Strategy} {row.Length} {row.Task}: {100 * row.Accuracy:F1} ({row.Samples} samples, {row.Seconds:F1} s; " +
                        $"{Progress.Fraction(done, total, progress.Elapsed)} samples in all)");
                    // A grown row replaces its kept part.
                    finished.RemoveAll(f => f.Cell == row.Cell);
                    finished.Add(row);
                    if (jsonFile is not null) RulerHarness.RewriteJson(jsonFile, run!, finished, complete: false);
                },
                o =>
                {
                    done++;
                    if (verb) progress.Line($"  [{o.Strategy} {o.Sample.Sample.Task} #{o.Sample.Sample.Index}] {o.Score:F2} expected [{string.Join(", ", o.Sample.Sample.Answers)}] got {Quote(o.Output)}");
                    progress.Update($"{o.Strategy} {o.Sample.Sample.TargetTokens} {o.Sample.Sample.Task}: sample {Progress.Fraction(done, total, progress.Elapsed)}");
                },
                cancel, kept);
            progress.Clear();
            (jsonFile is WriterStream ? io.Err : io.Out).Write(RulerHarness.FormatTable(rows));
            // What the defaults chose per request (APB's lengths and budget, Star's anchor), once per strategy and length.
            foreach (var line in RulerHarness.FormatSettings(rows)) io.Err.WriteLine(line);
            if (chartFile is not null)
            {
                chartFile.Write(System.Text.Encoding.UTF8.GetBytes(ResultCharts.Ruler(rows)));
                io.Err.WriteLine($"chart: {r.GetValue(chart)}");
            }
            if (jsonFile is not null)
            {
                RulerHarness.RewriteJson(jsonFile, run!, [.. others, .. rows], complete: true);
                if (jsonFile is WriterStream) io.Out.WriteLine();
            }
            return 0;
        })));
        return cmd;
    }

    /// <summary>
    /// The file --resume continues: null when --out names no file yet (or an empty one: a run stopped before its first
    /// row), so the run starts it.
    /// </summary>
    static RulerResults? Resumed(string? outPath)
    {
        if (outPath is null or "-")
            throw new ApbException("--resume continues the JSON file that --out names: give --out FILE, the file of the run to continue");
        return File.Exists(outPath) && new FileInfo(outPath).Length > 0 ? RulerResults.Read(outPath) : null;
    }

    /// <summary>A strategy name; a number where a strategy belongs is most likely the old `-s N` (now --samples N).</summary>
    static StrategyKind ParseStrategy(string name) =>
        int.TryParse(name, out _)
            ? throw new ApbException($"--strategies {name}: a number where a strategy belongs; -s is --strategies (full, ring, zigzag, ulysses, star, apb), the sample count is --samples {name}")
            : StrategyOptions.ParseStrategy(name);

    /// <summary>
    /// APB's scorer (always: the default depends on the model folder) and what else a run changes from a strategy's
    /// defaults (the novelty term's weight, a query-free anchor, l_a, l_p), for its table column and JSON rows; null when nothing.
    /// </summary>
    static string? Variant(StrategyKind kind, ScorerKind scorer, float? noveltyWeight, int? anchor, int? passing, bool anchorQuery, int passingFromLayer,
        int? passingBudget)
    {
        var parts = new List<string>();
        if (kind.IsApb()) parts.Add(StrategyOptions.ApbLabel(scorer, noveltyWeight, anchorQuery, passingFromLayer, passingBudget));
        if ((kind.IsApb() || kind == StrategyKind.Star) && anchor is int a) parts.Add($"l_a {a}");
        if (kind.IsApb() && passing is int p) parts.Add($"l_p {p}");
        return parts.Count == 0 ? null : string.Join(", ", parts);
    }

    static void Write(Stream s, IReadOnlyList<EncodedSample> all, string format)
    {
        if (format == "ids") SampleJsonl.WriteIds(s, all);
        else SampleJsonl.Write(s, all);
    }

    static string Quote(string s) => "\"" + s.Replace("\n", "\\n") + "\"";

    /// <summary>An argument as a POSIX shell reads it back: bare when it is plain, else single-quoted.</summary>
    static string ShellWord(string s) =>
        s.Length > 0 && s.All(c => char.IsAsciiLetterOrDigit(c) || "-_=.,:/+@%".Contains(c)) ? s : "'" + s.Replace("'", "'\\''") + "'";

    /// <summary>
    /// Every sample is held in memory until the run ends (4 bytes a token of ids, and its text as UTF-16, ~8 more):
    /// 2^28 tokens is ~3 GB, 37 times the 16K x 11 tasks x 40 samples of the accuracy runs in the README.
    /// </summary>
    const long MaxSampleTokens = 1L << 28;

    static int CheckSamples(int n, IReadOnlyList<RulerTask> tasks, IReadOnlyList<int> lengths)
    {
        if (n < 1) throw new ApbException($"--samples must be at least 1, got {n}");
        long tokens = (long)n * tasks.Count * lengths.Sum(l => (long)l);
        if (tokens > MaxSampleTokens)
            throw new ApbException($"--samples {n} x {tasks.Count} task(s) x --length {string.Join(",", lengths)} is {tokens} tokens of samples, all held in memory; at most {MaxSampleTokens} are made in one run: use fewer --samples, or several runs with different --seed");
        return n;
    }

    /// <summary>--tokenizer's file: the argument itself when it is a file, else tokenizer.json in that folder.</summary>
    static string TokenizerFile(string dir) => File.Exists(dir) ? dir : Path.Combine(dir, "tokenizer.json");

    static HfTokenizer LoadTokenizer(string dir)
    {
        string path = TokenizerFile(dir);
        if (!File.Exists(path)) throw new ApbException($"{path}: tokenizer.json not found (--tokenizer takes a model folder or a tokenizer.json file)");
        string cfg = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "tokenizer_config.json");
        return HfTokenizer.Load(path, File.Exists(cfg) ? cfg : null);
    }
}

/// <summary>Runs an action at the end of a using block.</summary>
sealed class Disposer(Action action) : IDisposable
{
    public void Dispose() => action();
}
