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

        /// <summary>"-1.2 ± 0.9": the difference and its 95 % half-width, as the table and `apb eval paired` print them.</summary>
        public string Text => $"{Points:+0.0;-0.0;0.0} ± {Interval95:F1}";
    }

    /// <summary>
    /// The paired difference of <paramref name="rows"/> against <paramref name="reference"/> over the tasks both have
    /// with per-sample scores of equal count (the rows of one length); null when no task pairs up.
    /// </summary>
    public static Result? Of(IReadOnlyList<RulerRow> rows, IReadOnlyList<RulerRow> reference) => Of([new Pair(rows, reference)]);

    /// <summary>
    /// The same over several pairs of runs, each of its own seed (other samples): a task's difference is the mean of
    /// d_i over every pair's samples of it, its variance that of those pooled samples. Two seeds of 60 samples a task
    /// pool to 120, an interval about 1/sqrt(2) as wide as either's.
    /// </summary>
    public static Result? Of(IReadOnlyList<Pair> pairs)
    {
        double sumDiff = 0, sumVar = 0;
        int tasks = 0;
        foreach (var task in Tasks(pairs))
        {
            if (TaskDifference(task, pairs) is not var (mean, variance)) continue;
            sumDiff += mean;
            sumVar += variance;
            tasks++;
        }
        if (tasks == 0) return null;
        return new Result(100 * sumDiff / tasks, 100 * Math.Sqrt(sumVar) / tasks, tasks);
    }

    /// <summary>
    /// One task's mean of d_i over every pair's samples and the variance of that mean (s^2 / n); null where no pair has
    /// the task with scores of equal count.
    /// </summary>
    static (double Mean, double Variance)? TaskDifference((string Task, int Length) task, IReadOnlyList<Pair> pairs)
    {
        var d = Differences(task, pairs);
        int n = d.Count;
        if (n == 0) return null;
        double mean = 0, ss = 0;
        foreach (double x in d) mean += x;
        mean /= n;
        foreach (double x in d) ss += (x - mean) * (x - mean);
        return (mean, n > 1 ? ss / (n - 1) / n : 0);
    }

    /// <summary>One run's rows against a reference run's rows of the same seed: what <see cref="Of(IReadOnlyList{Pair})"/> pools.</summary>
    public sealed record Pair(IReadOnlyList<RulerRow> Rows, IReadOnlyList<RulerRow> Reference);

    /// <summary>How many samples scored differently from their pair in the reference, over every pair: a task's mean can
    /// stay put while answers flip both ways.</summary>
    public static int ChangedSamples(IReadOnlyList<Pair> pairs) => Tasks(pairs).Sum(t => Differences(t, pairs).Count(d => d != 0));

    /// <summary>The (task, length)s of the pairs' rows, in the order they first appear.</summary>
    static IEnumerable<(string Task, int Length)> Tasks(IReadOnlyList<Pair> pairs) =>
        pairs.SelectMany(p => p.Rows).Select(r => (r.Task, r.Length)).Distinct();

    /// <summary>
    /// d_i = score_i - reference score_i over the samples of <paramref name="task"/> in every pair where both rows have
    /// per-sample scores of equal count (a pair without the task adds nothing).
    /// </summary>
    static List<double> Differences((string Task, int Length) task, IReadOnlyList<Pair> pairs)
    {
        var d = new List<double>();
        foreach (var p in pairs)
        {
            var r = p.Rows.FirstOrDefault(x => x.Task == task.Task && x.Length == task.Length);
            var f = p.Reference.FirstOrDefault(x => x.Task == task.Task && x.Length == task.Length);
            if (r?.Scores is { Count: > 0 } a && f?.Scores is { } b && b.Count == a.Count)
                for (int i = 0; i < a.Count; i++) d.Add(a[i] - b[i]);
        }
        return d;
    }

    /// <summary>
    /// The tasks whose mean, over every pair's samples of the task, moved against the reference by at least 0.05 points
    /// (what a table's one decimal shows), each with its move and that task's own interval: the means of fractional
    /// scores (cwe, fwe) can differ by float rounding alone, and that is no move; and one task's move of 5 points at 60
    /// samples is 3 samples, which its interval (about ±10 there) shows to be within what chance moves.
    /// </summary>
    public static List<(string Task, Result Move)> Moved(IReadOnlyList<Pair> pairs)
    {
        var moved = new List<(string Task, Result Move)>();
        foreach (var t in Tasks(pairs))
            if (TaskDifference(t, pairs) is var (mean, variance) && Math.Abs(100 * mean) >= 0.05)
                moved.Add((t.Task, new Result(100 * mean, 100 * Math.Sqrt(variance), 1)));
        return moved;
    }

    /// <summary>
    /// The file's rows cut to each task's first <paramref name="n"/> samples (mean and count with them): samples depend
    /// only on (seed, task, length, index), so the first n of a longer run are a shorter run's n. A row with fewer is
    /// an error that says how many it has.
    /// </summary>
    public static List<RulerRow> FirstSamples(RulerResults file, int n)
    {
        if (n < 1) throw new ApbException($"--samples {n}: pair at least 1 sample a task");
        return [.. file.Rows.Select(r => r.Scores!.Count >= n && r.Scores.Take(n).ToList() is var first
            ? r with { Scores = first, Samples = n, Accuracy = RulerScore.Mean(first) }
            : throw new ApbException($"--samples {n}: {file.Path} has {r.Scores!.Count} samples of {r.Task} at {r.Length}; pair at most that many"))];
    }

    /// <summary>
    /// Refuses two harness files of different seeds: their samples differ, so pairing them sample by sample would
    /// compare unrelated prompts. A file without a "seed" is not checked.
    /// </summary>
    public static void RequireSameSeed(RulerResults reference, RulerResults other)
    {
        if (reference.Seed is { } x && other.Seed is { } y && x != y)
            throw new ApbException($"{other.Path} was run with --seed {y} and {reference.Path} with --seed {x}: their samples differ, so they do not pair; run both with one seed");
    }

    /// <summary>
    /// Refuses pairs to pool whose reference runs share a seed: their samples are the same prompts, so pooling them would
    /// count each sample twice and make the interval look narrower than it is. A file without a "seed" is not checked.
    /// </summary>
    public static void RequireDistinctSeeds(IReadOnlyList<RulerResults> references)
    {
        var seen = new Dictionary<long, string>();
        foreach (var f in references)
            if (f.Seed is { } seed && !seen.TryAdd(seed, f.Path))
                throw new ApbException($"{seen[seed]} and {f.Path} were both run with --seed {seed}: pairs to pool must be of different seeds (the same seed's samples are the same prompts); pair such runs one at a time");
    }

    /// <summary>
    /// What made the two files that differs besides the setting compared: the build of apb, the device, and any file
    /// both hashed (weights, retaining heads, tokenizer), each "what: reference's against other's". Empty when nothing
    /// recorded differs. A difference of builds or devices is a second cause a paired difference may hold (kernels
    /// that should compute the same, another card), so `apb eval paired` prints it beside the result.
    /// </summary>
    public static List<string> Differences(RulerResults reference, RulerResults other)
    {
        var d = new List<string>();
        if (reference.Engine is { } e1 && other.Engine is { } e2 && e1 != e2) d.Add($"build: apb {e1} against apb {e2}");
        if (reference.Device is { } d1 && other.Device is { } d2 && d1 != d2) d.Add($"device: {d1} against {d2}");
        foreach (var (name, hash) in reference.Sha256.OrderBy(x => x.Key, StringComparer.Ordinal))
            if (other.Sha256.TryGetValue(name, out var h) && h != hash) d.Add($"{name}: {hash[..Math.Min(12, hash.Length)]}... against {h[..Math.Min(12, h.Length)]}...");
        return d;
    }

    /// <summary>
    /// An `apb eval ruler` JSON file with only the rows of <paramref name="strategy"/> (its name, as the JSON's
    /// "strategy"), each with its per-sample scores: for pairing runs of one seed that could not share one invocation (a setting read from
    /// the environment, another binary). A file without scores (written before they were kept) is an error that says so.
    /// </summary>
    public static RulerResults Read(string path, string strategy)
    {
        var file = RulerResults.Read(path);
        var rows = file.Rows.Where(r => r.Strategy.Name == strategy).ToList();
        if (rows.Any(r => r.Scores is null))
            throw new ApbException($"{path}: its rows have no per-sample \"scores\" (written before the harness kept them): run it again to pair it");
        if (rows.Count == 0) throw new ApbException($"{path}: no rows of strategy {strategy}");
        return file with { Rows = rows };
    }
}
