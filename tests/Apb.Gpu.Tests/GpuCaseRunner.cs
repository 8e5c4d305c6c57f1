using System.Diagnostics;

namespace Apb.Gpu.Tests;

/// <summary>A case's outcome: passed when it ran to the end, compared something, and every comparison held.</summary>
public sealed record CaseResult(GpuCase Case, bool Pass, double Seconds, IReadOnlyList<Measurement> Measurements, string? Error);

/// <summary>Runs one case on the shared backends (the same path for the AOT runner and for xunit).</summary>
public static class GpuCaseRunner
{
    public const int DefaultSeed = 1;

    public static CaseResult Run(GpuCase c, GpuDevices devices, int seed = DefaultSeed)
    {
        var gpu = devices.Gpu;
        var kernel = gpu.AttentionKernel;
        long mark = gpu.Pool.Mark();
        using var check = new GpuCheck(devices, c.Id, seed);
        var sw = Stopwatch.StartNew();
        string? error = null;
        try
        {
            c.Run(check);
            gpu.Synchronize();
        }
        catch (Exception e)
        {
            // One case's crash must not hide the others' results: it is this case's failure, and the run goes on.
            error = $"{e.GetType().Name}: {e.Message}";
        }
        finally
        {
            gpu.AttentionKernel = kernel;
            // Everything the case allocated on the device goes back to the pool (cases do not dispose tensor by tensor).
            try { gpu.Pool.ReleaseSince(mark); }
            catch (ApbException e) { error ??= $"after the case: {e.Message}"; }
        }
        if (error == null && check.Measurements.Count == 0) error = "the case compared nothing";
        bool pass = error == null && check.Measurements.All(m => m.Pass);
        return new CaseResult(c, pass, sw.Elapsed.TotalSeconds, [.. check.Measurements], error);
    }

    /// <summary>The comparison closest to its limit (error / limit), for the one-line report.</summary>
    public static Measurement? Worst(CaseResult r) =>
        r.Measurements.Where(m => !m.Pass).FirstOrDefault()
        ?? r.Measurements.MaxBy(m => m.Limit > 0 ? m.Error / m.Limit : m.Error > 0 ? double.PositiveInfinity : 0);

    public static string Format(Measurement m) =>
        $"{m.What}{(m.Kernel != "" ? $" [{m.Kernel}]" : "")}: {Num(m.Error)} (limit {Num(m.Limit)}){(m.Note != "" ? $" {m.Note}" : "")}";

    /// <summary>Why a case failed: its error, or each comparison that did not hold.</summary>
    public static string Describe(CaseResult r)
    {
        if (r.Pass) return $"{r.Case.Id}: passed";
        var lines = new List<string> { $"{r.Case.Id}: FAILED" };
        if (r.Error != null) lines.Add("  " + r.Error);
        lines.AddRange(r.Measurements.Where(m => !m.Pass).Select(m => "  " + Format(m)));
        return string.Join('\n', lines);
    }

    public static string Num(double d) => double.IsNaN(d) ? "NaN" : d == 0 ? "0" : Math.Abs(d) >= 1 && d == Math.Floor(d) ? d.ToString("F0") : d.ToString("E2");
}
