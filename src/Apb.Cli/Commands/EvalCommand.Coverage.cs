using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Apb.Diagnostics;
using Apb.Eval;
using Apb.Model;
using Apb.Strategies;
using Apb.Strategies.Apb;

namespace Apb.Cli.Commands;

static partial class EvalCommand
{
    /// <summary>
    /// `apb eval coverage`: on one sample, per layer, how much of full attention's softmax a block row keeps under Star and
    /// under APB with each passing length asked for (<see cref="PassingCoverage"/> says what is measured and how).
    /// </summary>
    static Command Coverage(Io io)
    {
        var model = new ModelFlags();
        var task = new Option<string>("--task") { Description = "the task whose sample is measured: " + string.Join(", ", RulerTasks.All.Select(t => t.Name)), DefaultValueFactory = _ => "niah_multikey_2" };
        var length = CommonOptions.Lengths("target tokens (context + query) of the sample", "32k");
        var sample = new Option<int>("--sample") { Description = "the sample's index (samples depend only on seed, task, length and index, as in apb eval ruler)", DefaultValueFactory = _ => 0 };
        var seed = Seed();
        var ranks = new Option<int>("--ranks", "-r") { Description = "ranks the context is split over", DefaultValueFactory = _ => 8 };
        var anchor = new Option<int?>("--anchor") { Description = "APB's anchor length l_a (default: APB's for the context and ranks, as apb eval ruler --anchor-query false plans it)" };
        var passing = new Option<string?>("--passing") { Description = "comma list of APB passing lengths to measure, 0 for none (default: APB's l_p); Star is always measured" };
        var budget = StrategyFlags.PassingBudgetOption();
        budget.Description = "APB's passing budget for every passing length measured (default: APB's, twice the default l_p, none with --passing given; 0: none)";
        var rows = new Option<int>("--rows") { Description = "rows sampled per block of ranks 1 .. R-1, evenly spaced (each against all its keys, every head)", DefaultValueFactory = _ => 64 };
        var heads = new Option<string?>("--retaining-heads") { Description = StrategyFlags.HeadsHelp };
        var novelty = StrategyFlags.NoveltyWeightOption();
        var device = CommonOptions.Device();
        var json = new Option<string?>("--out", "-o") { Description = "also write the per-layer results as JSON here" };
        var cmd = new Command("coverage", "per layer, the share of full attention's softmax a block row keeps under Star and under APB's passing lengths, on one sample")
        {
            task, length, sample, seed, ranks, anchor, passing, budget, rows, heads, novelty, device, json,
        };
        model.AddTo(cmd);
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            var taskList = RulerTasks.Parse(r.GetValue(task)!);
            if (taskList.Count != 1) throw new ApbException($"--task takes one task (got {r.GetValue(task)})");
            var lengths = SampleGenerator.ParseLengths(r.GetValue(length)!, "--length");
            if (lengths.Count != 1) throw new ApbException($"--length takes one length (got {r.GetValue(length)})");
            int rankCount = r.GetValue(ranks), index = r.GetValue(sample), perBlock = r.GetValue(rows);
            if (index < 0) throw new ApbException($"--sample must be >= 0 (got {index})");
            var passings = r.GetValue(passing) is string p
                ? p.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(x =>
                    int.TryParse(x, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n >= 0 ? n
                    : throw new ApbException($"--passing '{x}' is not a length >= 0")).ToList()
                : null;

            using var bundle = CommonOptions.OpenModel(model.Get(r), io);
            var (_, headsPath) = StrategyFlags.Scorer("retaining", r.GetValue(heads), bundle.Directory);
            float weight = ScorerChoice.NoveltyWeight(ScorerKind.Retaining, r.GetValue(novelty));
            var e = new SampleGenerator(bundle.Tokenizer).Generate(taskList[0], lengths[0], r.GetValue(seed), index);
            int n = e.ContextIds.Length;
            // APB's plans as `apb eval ruler -s apb --anchor-query false` makes them: the defaults, the refusals, the rows
            // each rank selects from and sends.
            var options = new StrategyOptions
            {
                Strategy = StrategyKind.Apb, Ranks = rankCount, AnchorLength = r.GetValue(anchor), Scorer = ScorerKind.Retaining,
                AnchorQuery = false, FallbackBelow = 0, PassingBudget = r.GetValue(budget),
            };
            StrategyOptions.CheckPassingBudget(options.PassingBudget, StrategyKind.Apb);
            var plans = (passings?.Select(x => (int?)x) ?? [null])
                .Select(lp => SequencePlanner.Plan(options with { PassingLength = lp }, n, e.QueryIds.Length, 0).Plan!).ToList();
            int anchorRows = plans[0].AnchorLength;

            // The output file is created before the forward (minutes at 64K on a CPU): an unwritable path is said now.
            using var jsonFile = r.GetValue(json) is string path ? CommonOptions.CreateOutput(path, "--out") : null;
            string dev = r.GetValue(device)!;
            using var backend = CommonOptions.Backend(dev);
            var llama = bundle.LoadModel(backend);
            using var retaining = RetainingHeads.Open(headsPath!, bundle.Config);
            var scorer = new RetainingHeadScorer(backend, bundle.Config, retaining);
            using var coverage = new PassingCoverage(backend, bundle.Config, llama.Rope, scorer, weight, plans, perBlock);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            llama.Forward(e.ContextIds, coverage, LogitsFor.None);
            io.Err.WriteLine($"full attention over {n} context tokens on {dev} with the coverage of {coverage.Settings.Count} settings: {sw.Elapsed.TotalSeconds:F1} s");

            int block = plans[0].BlockLength;
            io.Out.WriteLine($"## apb eval coverage: {e.Sample.Task}, sample {index} of seed {r.GetValue(seed)}, {n} context tokens, {rankCount} ranks " +
                             $"(blocks of {block}), anchor {anchorRows}, {perBlock} rows a block of ranks 1-{rankCount - 1}, novelty weight {weight.ToString(CultureInfo.InvariantCulture)}");
            io.Out.WriteLine();
            io.Out.WriteLine("Coverage: the share of full attention's softmax mass on the keys a block row sees (1: all of it). Star: the first block and " +
                             "its own; APB: the anchor (here the context start, without the query), the rows earlier ranks passed for its KV head " +
                             "(selected from full attention's activations), and its own block.");
            io.Out.WriteLine();
            var settings = coverage.Settings;
            var layers = coverage.Results.Select(x => x.Layer).Distinct().Order().ToList();
            Table(settings, xs => xs.Average(x => x.Coverage).ToString("F3", CultureInfo.InvariantCulture));
            io.Out.WriteLine("Output error: |o - o_full| / |o_full| of a row's attention output over its visible keys against full attention's, the same q, k, v " +
                             "(0: the layer's result is full attention's).");
            io.Out.WriteLine();
            Table(settings, xs => xs.Average(x => x.OutputError).ToString("F3", CultureInfo.InvariantCulture));
            // A later APB rank reads more passed rows (every earlier rank's block); a Star rank reads one block at any rank.
            io.Out.WriteLine("Output error by rank (the mean over layers of each rank's rows):");
            io.Out.WriteLine();
            io.Out.WriteLine($"| setting | {string.Join(" | ", Enumerable.Range(1, rankCount - 1).Select(k => $"rank {k}"))} |");
            io.Out.WriteLine($"|---|{string.Concat(Enumerable.Repeat("---|", rankCount - 1))}");
            foreach (var s in settings)
            {
                var mine = coverage.Results.Where(x => x.Setting == s).ToList();
                var cells = Enumerable.Range(0, rankCount - 1).Select(k => mine.Average(x => x.OutputErrorByRank[k]).ToString("F3", CultureInfo.InvariantCulture));
                io.Out.WriteLine($"| {s.Name} | {string.Join(" | ", cells)} |");
            }
            io.Out.WriteLine();
            var apb = settings.Where(s => s.Passing is > 0).ToList();
            if (apb.Count > 0)
            {
                io.Out.WriteLine("Passed rows: their share of APB's softmax over the visible keys (in brackets: of full attention's).");
                io.Out.WriteLine();
                Table(apb, xs => string.Create(CultureInfo.InvariantCulture, $"{xs.Average(x => x.PassedShareVisible):F3} ({xs.Average(x => x.PassedShareFull):F3})"));
            }
            if (jsonFile is not null)
            {
                using var w = new Utf8JsonWriter(jsonFile, new JsonWriterOptions { Indented = true });
                w.WriteStartObject();
                w.WriteString("task", e.Sample.Task); w.WriteNumber("sample", index); w.WriteNumber("seed", r.GetValue(seed));
                w.WriteNumber("context_tokens", n); w.WriteNumber("ranks", rankCount); w.WriteNumber("anchor", anchorRows);
                w.WriteNumber("rows_per_block", perBlock); w.WriteNumber("novelty_weight", weight);
                w.WriteStartArray("results");
                foreach (var x in coverage.Results)
                {
                    w.WriteStartObject();
                    w.WriteNumber("layer", x.Layer); w.WriteString("setting", x.Setting.Name);
                    if (x.Setting.Plan is { } plan) { w.WriteNumber("passing", plan.PassingLength); w.WriteNumber("passing_budget", plan.PassingBudget); }
                    w.WriteNumber("coverage", x.Coverage); w.WriteNumber("passed_share_of_visible", x.PassedShareVisible);
                    w.WriteNumber("passed_share_of_full", x.PassedShareFull);
                    w.WriteNumber("output_error", x.OutputError);
                    w.WriteStartArray("output_error_by_rank");   // ranks 1 .. R-1 (rank 0 has no row to measure)
                    foreach (double v in x.OutputErrorByRank)
                        if (double.IsNaN(v)) w.WriteNullValue(); else w.WriteNumberValue(v);   // null: a rank with no rows
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            return 0;

            // One row per layer and a mean row; a cell is what `cell` makes of a setting's results there.
            void Table(IReadOnlyList<PassingCoverage.Setting> cols, Func<IEnumerable<PassingCoverage.LayerResult>, string> cell)
            {
                io.Out.WriteLine($"| layer | {string.Join(" | ", cols.Select(s => s.Name))} |");
                io.Out.WriteLine($"|---|{string.Concat(cols.Select(_ => "---|"))}");
                foreach (int l in layers.Append(-1))
                {
                    var cells = cols.Select(s => cell(coverage.Results.Where(x => x.Setting == s && (l < 0 || x.Layer == l))));
                    io.Out.WriteLine($"| {(l < 0 ? "**mean**" : l.ToString(CultureInfo.InvariantCulture))} | {string.Join(" | ", cells)} |");
                }
                io.Out.WriteLine();
            }
        }));
        return cmd;
    }
}
