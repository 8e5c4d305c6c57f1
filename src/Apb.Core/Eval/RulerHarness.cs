using System.Diagnostics;
using Apb.Engine;
using Apb.Tokenization;

namespace Apb.Eval;

/// <summary>
/// A strategy as the harness names it: "full" on 1 rank, "apb" on 4, ...; <see cref="Variant"/> says what differs from
/// the strategy's defaults ("retaining heads", "l_p 1024"), so two APB runs in one table or chart stay apart.
/// </summary>
public sealed record StrategySpec(string Name, int Ranks, string? Variant = null)
{
    /// <summary>The label in tables and progress lines: "full", "apb x4", "apb x4 (retaining heads)".</summary>
    public override string ToString() => (Ranks == 1 ? Name : $"{Name} x{Ranks}") + (Variant is null ? "" : $" ({Variant})");
}

/// <summary>
/// One row of the result table: a strategy at a length on a task. <see cref="Settings"/>: what the row's samples ran with
/// where defaults chose it per request (APB's l_a, l_p and budget; <see cref="Strategies.PrefillPlan.Settings"/>), its
/// samples' values merged into ranges (<see cref="RulerHarness.MergeSettings"/>); null where nothing was recorded.
/// </summary>
public sealed record RulerRow(StrategySpec Strategy, int Length, string Task, double Accuracy, int Samples, double Seconds,
    IReadOnlyList<double>? Scores = null, string? Settings = null)
{
    /// <summary>Which cell of a run the row fills: one row per strategy, length and task (what --resume keeps or grows).</summary>
    public (StrategySpec Strategy, int Length, string Task) Cell => (Strategy, Length, Task);
}

/// <summary>What one sample produced, for --verbose and tests; Settings as its session reported them (IInferenceSession.Settings).</summary>
public sealed record SampleOutcome(StrategySpec Strategy, EncodedSample Sample, string Output, double Score, string? Settings = null);

/// <summary>
/// Runs the same samples through each strategy with greedy decoding and scores them RULER's way. Sessions come from a
/// factory (strategy, KV capacity) so the harness knows nothing of ranks: full attention is a LocalSession, the
/// distributed strategies a GroupSession on a resident rank group, a future path whatever implements IInferenceSession. The factory sees
/// the sample, so it can size caches and APB's anchor (which must hold the query) per request.
/// </summary>
public static class RulerHarness
{
    /// <summary>Tokens generated beyond the expected answer's own length (stop tokens usually end it sooner).</summary>
    public const int ExtraNewTokens = 4;

    /// <summary>Greedy budget: the expected answer's length plus <see cref="ExtraNewTokens"/>.</summary>
    public static int MaxNewTokens(EncodedSample e) => e.AnswerIds.Length + ExtraNewTokens;

    /// <summary>KV rows a session needs for the sample: prompt plus generation budget.</summary>
    public static int Capacity(EncodedSample e) => e.PromptTokens + MaxNewTokens(e);

    /// <summary>
    /// Every strategy over every (length, task) group of <paramref name="samples"/>, one row each, in that order.
    /// A group with a row in <paramref name="kept"/> (an earlier run's, same strategy, length and task: `--resume`) is
    /// not run again: its row takes its place, and onRow is not called for it. A kept row of fewer samples than the group
    /// has (a run grown with --samples) holds the group's first ones: only the samples from its count on are run, and the
    /// row that onRow gets has the kept scores followed by the new ones, its seconds the sum of both runs'.
    /// </summary>
    public static List<RulerRow> Run(IReadOnlyList<EncodedSample> samples, IReadOnlyList<StrategySpec> strategies,
        Func<StrategySpec, EncodedSample, IInferenceSession> sessionFactory, HfTokenizer tokenizer, IReadOnlyCollection<int> stopTokens,
        Action<RulerRow>? onRow = null, Action<SampleOutcome>? onSample = null, CancellationToken cancel = default,
        IReadOnlyList<RulerRow>? kept = null)
    {
        var rows = new List<RulerRow>();
        var groups = samples.GroupBy(s => (s.Sample.TargetTokens, s.Sample.Task)).ToList();
        foreach (var spec in strategies)
            foreach (var g in groups)
            {
                var done = kept?.FirstOrDefault(k => k.Cell == (spec, g.Key.TargetTokens, g.Key.Task));
                if (done is not null && done.Samples >= g.Count())
                {
                    rows.Add(done);
                    continue;
                }
                var sw = Stopwatch.StartNew();
                var scores = new List<double>(done?.Scores ?? []);
                var settings = new List<string>(done?.Settings is { } ds ? [ds] : []);
                foreach (var e in g)
                {
                    if (done is not null && e.Sample.Index < done.Samples) continue;
                    var outcome = RunOne(spec, e, sessionFactory, tokenizer, stopTokens, cancel);
                    scores.Add(outcome.Score);
                    if (outcome.Settings is { } set) settings.Add(set);
                    onSample?.Invoke(outcome);
                }
                var row = new RulerRow(spec, g.Key.TargetTokens, g.Key.Task, RulerScore.Mean(scores), scores.Count,
                    (done?.Seconds ?? 0) + sw.Elapsed.TotalSeconds, scores, MergeSettings(settings));
                rows.Add(row);
                onRow?.Invoke(row);
            }
        return rows;
    }

    /// <summary>Between the differently worded settings of one row (<see cref="MergeSettings"/>).</summary>
    public const string SettingsSeparator = " | ";

    static readonly System.Text.RegularExpressions.Regex Number = new(@"(\d+)(?:-(\d+))?");

    /// <summary>
    /// Samples' settings as one line: those worded alike but for their numbers become one, each number the range it took
    /// ("l_a 96, l_p 504" and "l_a 112, l_p 500" -> "l_a 96-112, l_p 500-504"; a merged line merges again), differently
    /// worded ones are kept apart, joined by <see cref="SettingsSeparator"/> in the order first seen; null for none.
    /// </summary>
    public static string? MergeSettings(IEnumerable<string> settings)
    {
        var shapes = new List<(string Shape, string[] Text, long[] Lo, long[] Hi)>();
        foreach (var line in settings.SelectMany(x => x.Split(SettingsSeparator)))
        {
            var ms = Number.Matches(line);
            string shape = Number.Replace(line, "#");
            var text = new string[ms.Count + 1];   // the words around the numbers
            int from = 0;
            for (int i = 0; i < ms.Count; i++) { text[i] = line[from..ms[i].Index]; from = ms[i].Index + ms[i].Length; }
            text[ms.Count] = line[from..];
            long[] lo = [.. ms.Select(m => long.Parse(m.Groups[1].Value))];
            long[] hi = [.. ms.Select(m => long.Parse(m.Groups[2].Success ? m.Groups[2].Value : m.Groups[1].Value))];
            int at = shapes.FindIndex(x => x.Shape == shape);
            if (at < 0) { shapes.Add((shape, text, lo, hi)); continue; }
            for (int i = 0; i < lo.Length; i++)
            {
                shapes[at].Lo[i] = Math.Min(shapes[at].Lo[i], lo[i]);
                shapes[at].Hi[i] = Math.Max(shapes[at].Hi[i], hi[i]);
            }
        }
        if (shapes.Count == 0) return null;
        return string.Join(SettingsSeparator, shapes.Select(x =>
        {
            var sb = new System.Text.StringBuilder(x.Text[0]);
            for (int i = 0; i < x.Lo.Length; i++)
                sb.Append(x.Lo[i] == x.Hi[i] ? $"{x.Lo[i]}" : $"{x.Lo[i]}-{x.Hi[i]}").Append(x.Text[i + 1]);
            return sb.ToString();
        }));
    }

    public static SampleOutcome RunOne(StrategySpec spec, EncodedSample e, Func<StrategySpec, EncodedSample, IInferenceSession> sessionFactory,
        HfTokenizer tokenizer, IReadOnlyCollection<int> stopTokens, CancellationToken cancel = default)
    {
        var options = new SamplingOptions { MaxNewTokens = MaxNewTokens(e) };
        using var session = sessionFactory(spec, e);
        var result = Generator.Run(session, tokenizer, e.ContextIds, e.QueryIds, options, stopTokens, cancel: cancel);
        return new SampleOutcome(spec, e, result.Text, RulerScore.Score(result.Text, e.Sample.Answers), session.Settings);
    }

    /// <summary>"settings: apb x4 at 32768: l_a 1024, l_p 512, passing budget 1024", one line per strategy and length that recorded any.</summary>
    public static IEnumerable<string> FormatSettings(IReadOnlyList<RulerRow> rows) =>
        rows.Where(x => x.Settings is not null).GroupBy(x => (x.Strategy, x.Length))
            .Select(g => $"settings: {g.Key.Strategy} at {g.Key.Length}: {MergeSettings(g.Select(x => x.Settings!))}");

    /// <summary>Markdown table: one row per task and length, one accuracy column per strategy (x100, as RULER prints).</summary>
    public static string FormatTable(IReadOnlyList<RulerRow> rows)
    {
        var strategies = rows.Select(r => r.Strategy).Distinct().ToList();
        var sb = new System.Text.StringBuilder();
        sb.Append("| length | task | samples |");
        foreach (var s in strategies) sb.Append($" {s} | {s} s |");
        sb.AppendLine();
        sb.Append("|---|---|---|");
        foreach (var _ in strategies) sb.Append("---|---|");
        sb.AppendLine();
        var keys = rows.Select(r => (r.Length, r.Task)).Distinct().ToList();
        foreach (var (len, task) in keys)
        {
            var any = rows.First(r => r.Length == len && r.Task == task);
            sb.Append($"| {len} | {task} | {any.Samples} |");
            foreach (var s in strategies)
            {
                var r = rows.FirstOrDefault(x => x.Length == len && x.Task == task && x.Strategy == s);
                sb.Append(r is null ? " | |" : $" {100 * r.Accuracy:F1} | {r.Seconds:F1} |");
            }
            sb.AppendLine();
        }
        foreach (var len in rows.Select(r => r.Length).Distinct())
        {
            sb.Append($"| {len} | **mean** | |");
            foreach (var s in strategies)
            {
                var rs = rows.Where(x => x.Length == len && x.Strategy == s).ToList();
                sb.Append(rs.Count == 0 ? " | |" : $" **{100 * rs.Average(x => x.Accuracy):F1}** | {rs.Sum(x => x.Seconds):F1} |");
            }
            sb.AppendLine();
            // Where full attention ran on the same samples: each other strategy's mean minus full's, sample by sample.
            var full = rows.Where(x => x.Length == len && x.Strategy.Name == "full").ToList();
            if (full.Count == 0 || strategies.Count < 2) continue;
            sb.Append($"| {len} | minus full (paired, 95 %) | |");
            foreach (var s in strategies)
            {
                var d = s.Name == "full" ? null : PairedDifference.Of(rows.Where(x => x.Length == len && x.Strategy == s).ToList(), full);
                sb.Append(d is null ? " | |" : $" {d.Text} | |");
            }
            sb.AppendLine();
        }
        return sb.ToString();
    }

    /// <summary>
    /// {"command", "earlier_commands" (a resumed file's earlier runs, when there are any), "seed", "engine" (apb's version and commit), "device", "model", "sha256": {file: hash}, "complete", "results": [{"strategy", "ranks",
    /// "length", "task", "accuracy" (0..1), "samples", "seconds" (this row's samples together, one run), "variant" (when
    /// set), "settings" (what the samples ran with where defaults chose it per request: APB's l_a, l_p and passing budget,
    /// Star's l_a; <see cref="RulerRow.Settings"/>), "scores" (each sample's score, in the run's sample order: the same samples for every strategy of a seed, so
    /// files of one seed pair up sample by sample)}, ...]}. complete is false while the run goes on (<see cref="RewriteJson"/>) and in what a run that stopped
    /// early left behind.
    /// </summary>
    public static void WriteJson(Stream stream, RulerRun run, IReadOnlyList<RulerRow> rows, bool complete = true)
    {
        using var w = new System.Text.Json.Utf8JsonWriter(stream, new System.Text.Json.JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("command", run.Command);
        if (run.EarlierCommands is { Count: > 0 } earlier)
        {
            w.WriteStartArray("earlier_commands");
            foreach (var c in earlier) w.WriteStringValue(c);
            w.WriteEndArray();
        }
        w.WriteNumber("seed", run.Seed);
        if (run.Engine is { } engine) w.WriteString("engine", engine);
        w.WriteString("device", run.Device);
        w.WriteString("model", run.Model);
        w.WriteStartObject("sha256");
        foreach (var f in run.Files) w.WriteString(f.Name, f.Sha256);
        w.WriteEndObject();
        w.WriteBoolean("complete", complete);
        w.WriteStartArray("results");
        foreach (var r in rows)
        {
            w.WriteStartObject();
            w.WriteString("strategy", r.Strategy.Name);
            w.WriteNumber("ranks", r.Strategy.Ranks);
            w.WriteNumber("length", r.Length);
            w.WriteString("task", r.Task);
            w.WriteNumber("accuracy", Math.Round(r.Accuracy, 6));
            w.WriteNumber("samples", r.Samples);
            w.WriteNumber("seconds", Math.Round(r.Seconds, 3));
            if (r.Strategy.Variant is { } variant) w.WriteString("variant", variant);
            if (r.Settings is { } settings) w.WriteString("settings", settings);
            if (r.Scores is { } scores)
            {
                w.WriteStartArray("scores");
                foreach (var x in scores) w.WriteNumberValue(Math.Round(x, 6));
                w.WriteEndArray();
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>
    /// The JSON of the rows so far in place of the file's whole content, so that a run stopped by a failure, a timeout or
    /// Ctrl-C keeps every row it finished (complete: false). A stream that cannot seek (stdout) gets the JSON once, at the
    /// end: nothing before <paramref name="complete"/>.
    /// </summary>
    public static void RewriteJson(Stream stream, RulerRun run, IReadOnlyList<RulerRow> rows, bool complete)
    {
        if (!stream.CanSeek)
        {
            if (complete) WriteJson(stream, run, rows);
            return;
        }
        stream.SetLength(0);
        stream.Position = 0;
        WriteJson(stream, run, rows, complete);
        stream.Flush();
    }
}
