namespace Apb.Eval;

/// <summary>
/// How far one strategy's task-mean accuracy lies from a reference's (full attention) on the same samples, and how sure
/// that is. A RULER run gives every strategy the same samples, so the difference is taken sample by sample: per task,
/// the mean of d_i = score_i(strategy) - score_i(reference) and its variance s_t^2 / n_t; the task-mean difference is
/// the mean over tasks, with standard error sqrt(sum_t s_t^2 / n_t) / T. Issue #20's bar ("APB within 1.0 point of
/// full") is a statement about that difference: at 20 samples a task, one sample of one task of 11 moves it by 0.45.
/// </summary>
public static class PairedDifference
{
    /// <summary>A difference and its standard error, in accuracy points (x100, as the tables print), over Tasks tasks.</summary>
    public sealed record Result(double Points, double StandardError, int Tasks)
    {
        /// <summary>The half-width of a normal 95 % interval.</summary>
        public double Interval95 => 1.96 * StandardError;
    }

    /// <summary>
    /// The paired difference of <paramref name="rows"/> against <paramref name="reference"/> over the tasks both have
    /// with per-sample scores of equal count (the rows of one length); null when no task pairs up.
    /// </summary>
    public static Result? Of(IReadOnlyList<RulerRow> rows, IReadOnlyList<RulerRow> reference)
    {
        double sumDiff = 0, sumVar = 0;
        int tasks = 0;
        foreach (var r in rows)
        {
            var f = reference.FirstOrDefault(x => x.Task == r.Task && x.Length == r.Length);
            if (r.Scores is not { Count: > 0 } a || f?.Scores is not { } b || b.Count != a.Count) continue;
            int n = a.Count;
            double mean = 0;
            for (int i = 0; i < n; i++) mean += a[i] - b[i];
            mean /= n;
            double ss = 0;
            for (int i = 0; i < n; i++) { double d = a[i] - b[i] - mean; ss += d * d; }
            sumDiff += mean;
            sumVar += n > 1 ? ss / (n - 1) / n : 0;
            tasks++;
        }
        if (tasks == 0) return null;
        return new Result(100 * sumDiff / tasks, 100 * Math.Sqrt(sumVar) / tasks, tasks);
    }
}
