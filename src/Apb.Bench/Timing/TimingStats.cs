namespace Apb.Bench.Timing;

/// <summary>Timed runs in milliseconds, their median (the mean of the middle two for an even count) and minimum.</summary>
public sealed record TimingStats(double[] RunsMs)
{
    public double MedianMs => Stats.Median(RunsMs);
    public double MinMs => RunsMs.Length == 0 ? double.NaN : RunsMs.Min();

    public static TimingStats Of(double[] runsMs) => new(runsMs);

    /// <summary>Wall time on the host (CPU work): warm-up calls, then each of <paramref name="repeats"/> calls by Stopwatch.</summary>
    public static TimingStats Stopwatch(Action work, int repeats, int warmup = 1)
    {
        for (int i = 0; i < warmup; i++) work();
        var runs = new double[Math.Max(repeats, 1)];
        for (int i = 0; i < runs.Length; i++)
        {
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            work();
            runs[i] = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        return new TimingStats(runs);
    }
}

public static class Stats
{
    /// <summary>The median (the mean of the middle two for an even count); NaN for none.</summary>
    public static double Median(IEnumerable<double> xs)
    {
        var a = xs.Order().ToArray();
        if (a.Length == 0) return double.NaN;
        return a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
    }

    /// <summary>Max over mean: 1 when every value is equal.</summary>
    public static double Imbalance(IEnumerable<double> xs)
    {
        var a = xs.ToArray();
        double mean = a.Average();
        return mean > 0 ? a.Max() / mean : 1;
    }
}
