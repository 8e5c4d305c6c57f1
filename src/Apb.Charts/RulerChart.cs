using ScottPlot;

namespace Apb.Charts;

/// <summary>
/// RULER accuracy: grouped bars per task (one bar per strategy x ranks x variant, plus a "mean" group), and when the results span
/// several context lengths a second chart, mean accuracy vs length, one line per strategy.
/// </summary>
public static class RulerChart
{
    /// <summary>Writes <paramref name="output"/> (and <c>&lt;out&gt;-by-length.png</c> for several lengths); returns the paths.</summary>
    public static IReadOnlyList<string> Render(IReadOnlyList<RulerRow> rows, string output)
    {
        var series = rows.Select(r => (r.Strategy, r.Ranks, r.Variant)).Distinct().ToList();
        var labels = series.Select(s => $"{s.Strategy} x{s.Ranks}" + (s.Variant is null ? "" : $" ({s.Variant})")).ToList();
        var colors = ChartStyle.Colors(labels);
        var tasks = rows.Select(r => r.Task).Distinct().ToList();
        var lengths = rows.Select(r => r.Length).Distinct().Order().ToList();

        var written = new List<string> { output };
        ChartStyle.Save(TaskBars(rows, series, labels, colors, tasks, lengths), output);
        if (lengths.Count > 1)
        {
            string byLength = ByLengthPath(output);
            ChartStyle.Save(ByLength(rows, series, labels, colors, lengths), byLength);
            written.Add(byLength);
        }
        return written;
    }

    /// <summary>"x/ruler.png" → "x/ruler-by-length.png".</summary>
    public static string ByLengthPath(string output)
    {
        string ext = Path.GetExtension(output);
        string stem = ext.Length > 0 ? output[..^ext.Length] : output;
        return stem + "-by-length" + (ext.Length > 0 ? ext : ".png");
    }

    /// <summary>Accuracy over every sample of the matching rows (rows of several lengths or files pool their samples).</summary>
    static double? Pooled(IEnumerable<RulerRow> rows)
    {
        double n = 0, hit = 0;
        foreach (var r in rows) { n += r.Samples; hit += r.Accuracy * r.Samples; }
        return n > 0 ? hit / n : null;
    }

    static Plot TaskBars(IReadOnlyList<RulerRow> rows, List<(string Strategy, int Ranks, string? Variant)> series, List<string> labels, Color[] colors,
        List<string> tasks, List<int> lengths)
    {
        var sampleCounts = rows.GroupBy(r => (r.Strategy, r.Ranks, r.Variant, r.Task)).Select(g => g.Sum(r => r.Samples)).Distinct().ToList();
        string samples = sampleCounts.Count == 1 ? $"{sampleCounts[0]} samples per task" : $"{sampleCounts.Min()}-{sampleCounts.Max()} samples per task";
        string context = lengths.Count == 1 ? $"context {ChartStyle.Tokens(lengths[0])}"
            : $"pooled over contexts {string.Join(", ", lengths.Select(ChartStyle.Tokens))}";
        var plot = ChartStyle.NewPlot($"RULER accuracy by task ({context}, {samples})", "RULER task", "accuracy (%)");

        int n = series.Count;
        double width = 0.84 / n;
        var bars = new List<Bar>();
        var groups = tasks.Append("mean").ToList();
        for (int s = 0; s < n; s++)
        {
            var mine = rows.Where(r => r.Strategy == series[s].Strategy && r.Ranks == series[s].Ranks && r.Variant == series[s].Variant).ToList();
            var perTask = tasks.Select(t => Pooled(mine.Where(r => r.Task == t))).ToList();
            var present = perTask.Where(v => v.HasValue).Select(v => v!.Value).ToList();
            perTask.Add(present.Count > 0 ? present.Average() : null); // mean over tasks, RULER's summary number
            for (int g = 0; g < groups.Count; g++)
            {
                if (perTask[g] is not double acc) continue;
                double pct = acc * 100;
                bars.Add(new Bar
                {
                    Position = g - 0.42 + width * (s + 0.5),
                    Value = pct,
                    Size = width * 0.92,
                    FillColor = colors[s],
                    LineWidth = 0,
                    Label = pct.ToString("0", System.Globalization.CultureInfo.InvariantCulture),
                });
            }
        }
        var barPlot = plot.Add.Bars(bars);
        barPlot.ValueLabelStyle.FontSize = n <= 3 ? 11 : 9;
        barPlot.ValueLabelStyle.ForeColor = Colors.Black.WithAlpha(0.75);

        var sep = plot.Add.VerticalLine(tasks.Count - 0.5);
        sep.LineColor = Colors.Gray; sep.LinePattern = LinePattern.Dashed; sep.LineWidth = 1;

        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, groups.Count).Select(g => (double)g).ToArray(), groups.ToArray());
        plot.Axes.Bottom.MajorTickStyle.Length = 6;
        plot.Axes.Bottom.TickLabelStyle.Rotation = -30;
        plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleRight;
        plot.Axes.Bottom.MinimumSize = 100;
        plot.Axes.SetLimits(-0.6, groups.Count - 0.4, 0, 108);
        ChartStyle.PercentTicks(plot);
        plot.Grid.XAxisStyle.MajorLineStyle.Width = 0;

        for (int s = 0; s < n; s++)
            plot.Legend.ManualItems.Add(new LegendItem { LabelText = labels[s], FillColor = colors[s] });
        plot.ShowLegend(Edge.Right);
        return plot;
    }

    static Plot ByLength(IReadOnlyList<RulerRow> rows, List<(string Strategy, int Ranks, string? Variant)> series, List<string> labels, Color[] colors,
        List<int> lengths)
    {
        var plot = ChartStyle.NewPlot("RULER mean accuracy vs context length (mean over tasks)", "context length (tokens)", "mean accuracy (%)");
        for (int s = 0; s < series.Count; s++)
        {
            var xs = new List<double>(); var ys = new List<double>();
            var mine = rows.Where(r => r.Strategy == series[s].Strategy && r.Ranks == series[s].Ranks && r.Variant == series[s].Variant).ToList();
            foreach (int len in lengths)
            {
                var perTask = mine.Where(r => r.Length == len).GroupBy(r => r.Task).Select(g => Pooled(g)!.Value).ToList();
                if (perTask.Count == 0) continue;
                xs.Add(Math.Log2(len)); ys.Add(perTask.Average() * 100);
            }
            var sc = plot.Add.Scatter(xs.ToArray(), ys.ToArray());
            sc.LegendText = labels[s]; sc.Color = colors[s]; sc.LineWidth = 2.5f; sc.MarkerSize = 9;
        }
        var (xLo, xHi) = ChartStyle.LengthAxis(plot, lengths);
        plot.Axes.SetLimits(xLo, xHi, 0, 105);
        ChartStyle.PercentTicks(plot);
        plot.ShowLegend(Edge.Right);
        return plot;
    }
}
