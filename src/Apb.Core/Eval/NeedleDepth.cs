namespace Apb.Eval;

/// <summary>
/// A run's per-sample scores by where the asked needle sits in the context, in equal parts by characters: quarters by
/// default, or one part per rank (8 parts on 8 ranks are the blocks of APB's contiguous layout, up to the anchor and the
/// question, which are small beside a block). Whether a model or a strategy misses needles at some depth more than at
/// others is what a task's mean hides: run 9 of the embedded model found multi-key needles in the first quarter of 64K
/// contexts 0.84 of the time and 0.59 past it (docs/notes/multikey-long-context.md). A sample's needle is its first
/// answer's own sentence ("... is: VALUE."), else the answer's first place in the context (vt: its first variable's
/// assignment). cwe and fwe have no needle (<see cref="RulerTasks.HasNeedle"/>) and are left out. Tasks with several
/// answers in several places (multi-value, multi-query) are placed by their first answer.
/// </summary>
public static class NeedleDepth
{
    public const int DefaultParts = 4, MaxParts = 16;

    /// <summary>One row of a run (task, length, strategy) split by depth: each part's mean score and sample count.</summary>
    public sealed record Row(string Task, int Length, StrategySpec Strategy, IReadOnlyList<(double Mean, int Count)> Parts)
    {
        /// <summary>The samples that have a place (the rest hold no needle and are left out).</summary>
        public int Placed => Parts.Sum(q => q.Count);
    }

    /// <summary>The part (0 .. parts - 1) of <paramref name="s"/>'s context that holds its needle, or null when it holds none.</summary>
    public static int? Part(EvalSample s, int parts = DefaultParts) => PartOf(s, CheckParts(parts));

    static int? PartOf(EvalSample s, int parts)
    {
        if (!RulerTasks.HasNeedle(s.Task) || s.Answers.Count == 0 || s.Context.Length == 0) return null;
        string answer = s.Answers[0];
        int at = s.Context.IndexOf($"is: {answer}.", StringComparison.Ordinal);
        if (at < 0) at = s.Context.IndexOf(answer, StringComparison.Ordinal);
        if (at < 0) return null;
        return (int)Math.Min(parts - 1, (long)parts * at / s.Context.Length);
    }

    /// <summary>
    /// Splits <paramref name="row"/>'s scores by the depth of each sample's needle; <paramref name="sampleAt"/> gives sample
    /// i of the row's task and length (the run's seed: samples depend only on seed, task, length and index).
    /// </summary>
    public static Row Of(RulerRow row, Func<int, EvalSample> sampleAt, int parts = DefaultParts)
    {
        CheckParts(parts);
        var scores = row.Scores ?? throw new ApbException(
            $"the row of {row.Strategy} on {row.Task} at {row.Length} has no per-sample scores (a file written before they were kept?)");
        var sum = new double[parts];
        var count = new int[parts];
        for (int i = 0; i < scores.Count; i++)
        {
            if (PartOf(sampleAt(i), parts) is not int q) continue;   // parts checked once, above
            sum[q] += scores[i];
            count[q]++;
        }
        return new Row(row.Task, row.Length, row.Strategy,
            [.. Enumerable.Range(0, parts).Select(q => (count[q] == 0 ? double.NaN : sum[q] / count[q], count[q]))]);
    }

    /// <summary>
    /// A pipe table: a line per row, "0.84 (15)" per part (mean, samples), "-" for an empty part; the columns name each
    /// part's span of the context in percent. The rows must share one number of parts.
    /// </summary>
    public static string Format(IEnumerable<Row> rows)
    {
        var list = rows.ToList();
        int parts = list.Count == 0 ? DefaultParts : list[0].Parts.Count;
        if (list.Any(r => r.Parts.Count != parts)) throw new ArgumentException("rows split into different numbers of parts", nameof(rows));
        string Span(int p) => $"{Percent(p, parts)}-{Percent(p + 1, parts)} %";
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"| strategy | task | length | needle at {Span(0)} | {string.Join(" | ", Enumerable.Range(1, parts - 1).Select(Span))} |");
        sb.AppendLine($"|---|---|---|{string.Concat(Enumerable.Repeat("---|", parts))}");
        foreach (var r in list)
        {
            var cells = r.Parts.Select(q => q.Count == 0 ? "-" : $"{q.Mean:F2} ({q.Count})");
            sb.AppendLine($"| {r.Strategy} | {r.Task} | {r.Length} | {string.Join(" | ", cells)} |");
        }
        return sb.ToString();
    }

    // 12.5 stays 12.5; whole percents print without a decimal point.
    static string Percent(int p, int parts) => (100.0 * p / parts).ToString("0.#", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary><paramref name="parts"/> when it is a number of parts this splits into, else an error that says which are.</summary>
    public static int CheckParts(int parts) => parts is >= 2 and <= MaxParts ? parts : throw new ApbException(
        $"--parts {parts}: split the context into 2 to {MaxParts} parts (4, the default, gives quarters; the number of ranks gives one part per rank)");
}
