namespace Apb.Eval;

/// <summary>
/// A run's per-sample scores by where the asked needle sits in the context: the first, second, third and last quarter
/// (by characters). Whether a model or a strategy misses needles at some depth more than at others is what a task's mean
/// hides: run 9 of the embedded model found multi-key needles in the first quarter of 64K contexts 0.84 of the time and
/// 0.59 past it (docs/notes/multikey-long-context.md). A sample's needle is its first answer's own sentence
/// ("... is: VALUE."), else the answer's first place in the context (vt: its first variable's assignment). cwe and fwe
/// have no needle (<see cref="RulerTasks.HasNeedle"/>) and are left out. Tasks with several answers in several places
/// (multi-value, multi-query) are placed by their first answer.
/// </summary>
public static class NeedleDepth
{
    public const int Bins = 4;

    /// <summary>One row of a run (task, length, strategy) split by depth: each quarter's mean score and sample count.</summary>
    public sealed record Row(string Task, int Length, StrategySpec Strategy, IReadOnlyList<(double Mean, int Count)> Quarters)
    {
        /// <summary>The samples that have a place (the rest hold no needle and are left out).</summary>
        public int Placed => Quarters.Sum(q => q.Count);
    }

    /// <summary>The quarter (0..3) of <paramref name="s"/>'s context that holds its needle, or null when it holds none.</summary>
    public static int? Quarter(EvalSample s)
    {
        if (!RulerTasks.HasNeedle(s.Task) || s.Answers.Count == 0 || s.Context.Length == 0) return null;
        string answer = s.Answers[0];
        int at = s.Context.IndexOf($"is: {answer}.", StringComparison.Ordinal);
        if (at < 0) at = s.Context.IndexOf(answer, StringComparison.Ordinal);
        if (at < 0) return null;
        return (int)Math.Min(Bins - 1, (long)Bins * at / s.Context.Length);
    }

    /// <summary>
    /// Splits <paramref name="row"/>'s scores by the depth of each sample's needle; <paramref name="sampleAt"/> gives sample
    /// i of the row's task and length (the run's seed: samples depend only on seed, task, length and index).
    /// </summary>
    public static Row Of(RulerRow row, Func<int, EvalSample> sampleAt)
    {
        var scores = row.Scores ?? throw new ApbException(
            $"the row of {row.Strategy} on {row.Task} at {row.Length} has no per-sample scores (a file written before they were kept?)");
        var sum = new double[Bins];
        var count = new int[Bins];
        for (int i = 0; i < scores.Count; i++)
        {
            if (Quarter(sampleAt(i)) is not int q) continue;
            sum[q] += scores[i];
            count[q]++;
        }
        return new Row(row.Task, row.Length, row.Strategy,
            [.. Enumerable.Range(0, Bins).Select(q => (count[q] == 0 ? double.NaN : sum[q] / count[q], count[q]))]);
    }

    /// <summary>A pipe table: a line per row, "0.84 (15)" per quarter (mean, samples), "-" for an empty quarter.</summary>
    public static string Format(IEnumerable<Row> rows)
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine("| strategy | task | length | needle at 0-25 % | 25-50 % | 50-75 % | 75-100 % |");
        sb.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var r in rows)
        {
            var cells = r.Quarters.Select(q => q.Count == 0 ? "-" : $"{q.Mean:F2} ({q.Count})");
            sb.AppendLine($"| {r.Strategy} | {r.Task} | {r.Length} | {string.Join(" | ", cells)} |");
        }
        return sb.ToString();
    }
}
