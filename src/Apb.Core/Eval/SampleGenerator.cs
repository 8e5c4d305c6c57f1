using Apb.Tokenization;

namespace Apb.Eval;

/// <summary>
/// Makes samples of a task at a token budget measured with the model's own tokenizer: the haystack size is searched
/// (interpolation inside a bracket) until context + query tokens land at most <c>target</c> and within
/// <see cref="Tolerance"/> below it. A sample depends only on (seed, task, target, index), so every strategy, every
/// run and every machine sees the same samples.
/// </summary>
public sealed class SampleGenerator(HfTokenizer tokenizer)
{
    /// <summary>Relative shortfall accepted below the budget (never above it: the budget is usually a model limit).</summary>
    public const double Tolerance = 0.02;

    public HfTokenizer Tokenizer { get; } = tokenizer;

    /// <summary>The sample's own seed: FNV-1a over (seed, task, target, index); stable across processes and .NET versions.</summary>
    public static int SampleSeed(int seed, string task, int target, int index)
    {
        uint h = 2166136261;
        void Mix(int x) { for (int i = 0; i < 4; i++) { h ^= (byte)(x >> (8 * i)); h *= 16777619; } }
        Mix(seed);
        foreach (char c in task) Mix(c);
        Mix(target);
        Mix(index);
        return (int)(h & 0x7fffffff);
    }

    public EncodedSample Generate(RulerTask task, int targetTokens, int seed, int index)
    {
        if (targetTokens < 16) throw new ApbException($"a target length of {targetTokens} tokens is too short for any task (use 256 or more)");
        int s = SampleSeed(seed, task.Name, targetTokens, index);
        var measured = new Dictionary<int, EncodedSample>();
        EncodedSample At(int units)
        {
            if (measured.TryGetValue(units, out var e)) return e;
            var b = task.Build(s, units);
            var sample = new EvalSample(task.Name, targetTokens, index, b.Context, b.Query, b.Answers);
            e = new EncodedSample(sample, Tokenizer.Encode(b.Context, addSpecialTokens: true).ToArray(),
                Tokenizer.Encode(b.Query, addSpecialTokens: false).ToArray(),
                Tokenizer.Encode(sample.AnswerText, addSpecialTokens: false).ToArray());
            return measured[units] = e;
        }

        int t1 = At(1).PromptTokens, lo = 1, tLo = t1;
        // A task whose instructions alone exceed a tiny budget gives its smallest sample (a little over the target).
        if (tLo >= targetTokens) return At(1);
        // Grow until the budget is bracketed, then interpolate; a few encodes of the whole text per sample.
        int hi = -1, tHi = 0;
        int u = Math.Max(2, (targetTokens - tLo) / 8);
        for (int iter = 0; iter < 40; iter++)
        {
            int t = At(u).PromptTokens;
            if (t <= targetTokens) { lo = u; tLo = t; } else { hi = u; tHi = t; }
            if (tLo >= targetTokens * (1 - Tolerance)) break;
            if (hi < 0)
            {
                double slope = Math.Max((double)(t - t1) / Math.Max(u - 1, 1), 0.5);
                u = Math.Max(u + 1, 1 + (int)Math.Ceiling((targetTokens - t1) / slope * 1.01));
                continue;
            }
            if (hi - lo <= 1) break;
            int next = lo + (int)((long)(hi - lo) * (targetTokens - tLo) / Math.Max(tHi - tLo, 1));
            u = Math.Clamp(next, lo + 1, hi - 1);
        }
        return At(lo);
    }

    /// <summary>Samples 0..count-1 of each task at each length, in (length, task, index) order; parallel over samples.</summary>
    public IReadOnlyList<EncodedSample> GenerateAll(IReadOnlyList<RulerTask> tasks, IReadOnlyList<int> lengths, int count, int seed,
        int threads = 0, CancellationToken cancel = default)
    {
        var jobs = (from len in lengths from t in tasks from i in Enumerable.Range(0, count) select (t, len, i)).ToArray();
        var r = new EncodedSample[jobs.Length];
        var po = new ParallelOptions { CancellationToken = cancel, MaxDegreeOfParallelism = threads > 0 ? threads : Environment.ProcessorCount };
        try
        {
            Parallel.For(0, jobs.Length, po, j => r[j] = Generate(jobs[j].t, jobs[j].len, seed, jobs[j].i));
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }
        return r;
    }

    /// <summary>
    /// "4k" = 4096, "16K" = 16384, "1m" = 1048576, "300" = 300; comma lists allowed. <paramref name="option"/> names the
    /// flag in errors (every command that takes lengths parses them here).
    /// </summary>
    public static IReadOnlyList<int> ParseLengths(string spec, string option = "--length")
    {
        var r = new List<int>();
        foreach (var p in spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string s = p.ToLowerInvariant();
            long mult = s.EndsWith('k') ? 1024 : s.EndsWith('m') ? 1024 * 1024 : 1;
            if (mult > 1) s = s[..^1];
            if (!long.TryParse(s, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long v) || v * mult <= 0 || v * mult > int.MaxValue)
                throw new ApbException($"{option} '{p}' is not a length: use a token count like 4096, 4k or 16K (comma lists allowed)");
            r.Add((int)(v * mult));
        }
        if (r.Count == 0) throw new ApbException($"{option} names no length: use e.g. 4k or 4k,16k");
        return r;
    }
}
