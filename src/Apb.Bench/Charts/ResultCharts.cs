using Apb.Bench.Prefill;
using Apb.Eval;

namespace Apb.Bench.Charts;

/// <summary>The charts `apb eval ruler --chart` and `apb bench prefill --chart` write: SVG from the rows the command measured.</summary>
public static class ResultCharts
{
    /// <summary>
    /// RULER accuracy (%): at one context length, bars per task plus their mean, one bar per strategy; at several, the
    /// mean over tasks against the length, one line per strategy.
    /// </summary>
    public static string Ruler(IReadOnlyList<RulerRow> rows)
    {
        var strategies = rows.Select(r => r.Strategy).Distinct().ToList();
        var lengths = rows.Select(r => r.Length).Distinct().Order().ToList();
        int samples = rows.Count == 0 ? 0 : rows.Max(r => r.Samples);
        if (lengths.Count > 1)
        {
            var lines = strategies.Select(s => new ChartSeries(s.ToString(),
                lengths.Select(n => ((double)n, 100 * rows.Where(r => r.Strategy == s && r.Length == n).Select(r => r.Accuracy).DefaultIfEmpty(double.NaN).Average()))
                    .Where(p => double.IsFinite(p.Item2)).ToList())).ToList();
            return SvgChart.Lines($"RULER accuracy, mean over tasks ({samples} samples per task)", "context length (tokens)", "accuracy (%)",
                lines, logX: true, logY: false, SvgChart.Tokens, yMin: 0, yMax: 100);
        }
        var tasks = rows.Select(r => r.Task).Distinct().ToList();
        var categories = tasks.Append("mean").ToList();
        var series = strategies.Select(s =>
        {
            var mine = rows.Where(r => r.Strategy == s).ToList();
            var points = tasks.Select((t, i) => (X: (double)i, Y: mine.Where(r => r.Task == t).Select(r => 100 * r.Accuracy).DefaultIfEmpty(double.NaN).First()))
                .Where(p => double.IsFinite(p.Y)).ToList();
            if (points.Count > 0) points.Add((tasks.Count, points.Average(p => p.Y)));
            return new ChartSeries(s.ToString(), points);
        }).ToList();
        string context = lengths.Count == 1 ? $"context {SvgChart.Tokens(lengths[0])}, " : "";
        return SvgChart.Bars($"RULER accuracy by task ({context}{samples} samples per task)", "task", "accuracy (%)", categories, series, yMax: 100);
    }

    /// <summary>Prefill seconds (median) against context length, one line per strategy and rank count; log-log axes.</summary>
    public static string Prefill(IReadOnlyList<PrefillCase> cases, string model, string device)
    {
        var ok = cases.Where(c => c.Status == "ok" && c.Seconds.Count > 0).ToList();
        var series = ok.GroupBy(c => $"{c.Strategy} x{c.Ranks}")
            .Select(g => new ChartSeries(g.Key, g.Select(c => ((double)c.Length, c.Median)).ToList())).ToList();
        return SvgChart.Lines($"prefill time: {model} on {device}", "context length (tokens)", "prefill time (s, log scale)",
            series, logX: true, logY: true, SvgChart.Tokens);
    }
}
