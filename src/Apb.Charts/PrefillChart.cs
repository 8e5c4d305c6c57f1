using System.Globalization;
using ScottPlot;

namespace Apb.Charts;

/// <summary>Prefill seconds vs context length, one line per strategy x ranks, peers (HF) dashed; log-log axes.</summary>
public static class PrefillChart
{
    public static string Render(PrefillData data, string output)
    {
        var labels = data.Points.Select(p => p.Series).Distinct().ToList();
        // Ours first in the order of the files, then peers.
        labels = labels.OrderBy(l => data.Points.First(p => p.Series == l).Peer).ToList();
        var colors = ChartStyle.Colors(labels);
        var lengths = data.Points.Select(p => p.Length).Distinct().Order().ToList();

        var plot = ChartStyle.NewPlot(Title(data), "context length (tokens)", "prefill time (s, log scale)");
        for (int s = 0; s < labels.Count; s++)
        {
            var pts = data.Points.Where(p => p.Series == labels[s]).OrderBy(p => p.Length).ToList();
            var sc = plot.Add.Scatter(pts.Select(p => Math.Log2(p.Length)).ToArray(), pts.Select(p => Math.Log10(p.Seconds)).ToArray());
            // The value at the longest context in the legend: lines that nearly coincide stay readable.
            var last = pts[^1];
            sc.LegendText = $"{labels[s]}  ({last.Seconds.ToString(last.Seconds < 100 ? "0.00" : "0.0", CultureInfo.InvariantCulture)} s at {ChartStyle.Tokens(last.Length)})";
            sc.Color = colors[s];
            sc.LineWidth = 2.5f;
            sc.MarkerSize = 9;
            sc.MarkerShape = Markers[s % Markers.Length];
            // A lone point (a strategy measured at one length) is easily hidden under another line's marker: ring it.
            if (pts.Count == 1) { sc.MarkerShape = MarkerShape.OpenDiamond; sc.MarkerSize = 16; sc.MarkerLineWidth = 2.5f; }
            if (pts[0].Peer) { sc.LinePattern = LinePattern.Dashed; sc.MarkerShape = MarkerShape.OpenCircle; }
        }

        var (xLo, xHi) = ChartStyle.LengthAxis(plot, lengths);
        double yMin = data.Points.Min(p => p.Seconds), yMax = data.Points.Max(p => p.Seconds);
        // Down to the 1-2-5 tick under the fastest point, so the bottom of the axis is labelled.
        double yLo = Math.Min(Math.Log10(yMin) - 0.08, Math.Log10(Tick125Below(yMin / 1.05)) - 0.02), yHi = Math.Log10(yMax) + 0.08;
        var (ticks, tickLabels) = LogTicks(yLo, yHi);
        plot.Axes.Left.SetTicks(ticks, tickLabels);
        plot.Axes.SetLimits(xLo, xHi, yLo, yHi);
        // Times grow with length, so the upper-left corner is empty: the legend goes there, inside, leaving the width
        // to the data.
        plot.ShowLegend(Alignment.UpperLeft);
        ChartStyle.Save(plot, output);
        return output;
    }

    static readonly MarkerShape[] Markers = [MarkerShape.FilledCircle, MarkerShape.FilledSquare, MarkerShape.FilledTriangleUp,
        MarkerShape.FilledDiamond, MarkerShape.FilledTriangleDown, MarkerShape.Cross, MarkerShape.Eks, MarkerShape.Asterisk];

    static string Title(PrefillData d)
    {
        var what = new List<string>();
        if (d.Models.Count > 0) what.Add(string.Join(", ", d.Models) + (d.Shapes.Count == 1 ? $" shape ({d.Shapes[0]})" : " shape"));
        if (d.Devices.Count > 0) what.Add(string.Join(", ", d.Devices));
        if (d.QueryTokens is int q) what.Add($"+{q} query tokens");
        return what.Count == 0 ? "Prefill time vs context length" : "Prefill time vs context length\n" + string.Join(" · ", what);
    }

    static double Tick125Below(double v)
    {
        double decade = Math.Pow(10, Math.Floor(Math.Log10(v)));
        return v >= 5 * decade ? 5 * decade : v >= 2 * decade ? 2 * decade : decade;
    }

    /// <summary>Ticks at 1, 2, 5 x 10^k inside [lo, hi] (log10 units), labelled in seconds.</summary>
    static (double[] Positions, string[] Labels) LogTicks(double lo, double hi)
    {
        var pos = new List<double>(); var lab = new List<string>();
        for (int k = (int)Math.Floor(lo) - 1; k <= (int)Math.Ceiling(hi); k++)
            foreach (double m in new[] { 1.0, 2, 5 })
            {
                double v = m * Math.Pow(10, k), lv = Math.Log10(v);
                if (lv < lo || lv > hi) continue;
                pos.Add(lv); lab.Add(v.ToString(v < 1 ? "0.###" : "0", CultureInfo.InvariantCulture));
            }
        if (pos.Count < 2) // a narrow range: label both ends
        {
            pos = [lo, hi];
            lab = [Math.Pow(10, lo).ToString("0.##", CultureInfo.InvariantCulture), Math.Pow(10, hi).ToString("0.##", CultureInfo.InvariantCulture)];
        }
        return (pos.ToArray(), lab.ToArray());
    }
}
