using System.Globalization;
using System.Text;

namespace Apb.Bench.Charts;

/// <summary>One named series: a value per category (bars) or (x, y) points (lines).</summary>
public sealed record ChartSeries(string Name, IReadOnlyList<(double X, double Y)> Points);

/// <summary>
/// A small SVG chart writer with no dependencies (so the Native AOT `apb` binary draws its own charts): grouped bars
/// or lines, axes with ticks and labels, a title and a legend. Text is plain SVG text in a generic sans-serif font, so
/// any browser or viewer renders it without a font file.
/// </summary>
public static class SvgChart
{
    const int Width = 900, Height = 520, Left = 70, Right = 230, Top = 50, Bottom = 70;
    static readonly string[] Palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>
    /// Grouped bars: one group per category, one bar per series (Points[i].X is the category's index). Values are
    /// drawn from 0 to <paramref name="yMax"/>.
    /// </summary>
    public static string Bars(string title, string xLabel, string yLabel, IReadOnlyList<string> categories, IReadOnlyList<ChartSeries> series, double yMax)
    {
        var svg = Start(title);
        double plotW = Width - Left - Right, plotH = Height - Top - Bottom;
        double Y(double v) => Top + plotH * (1 - Math.Clamp(v / yMax, 0, 1));
        YAxis(svg, Ticks(0, yMax), Y, yLabel);
        double group = plotW / Math.Max(1, categories.Count), bar = group * 0.8 / Math.Max(1, series.Count);
        for (int c = 0; c < categories.Count; c++)
        {
            double x0 = Left + group * c + group * 0.1;
            Text(svg, Left + group * (c + 0.5), Top + plotH + 16, categories[c], "middle", 11, rotate: categories.Count > 8);
            for (int s = 0; s < series.Count; s++)
                foreach (var p in series[s].Points.Where(p => (int)p.X == c))
                    svg.Append(Inv, $"<rect x=\"{x0 + bar * s:F1}\" y=\"{Y(p.Y):F1}\" width=\"{bar * 0.92:F1}\" height=\"{Y(0) - Y(p.Y):F1}\" fill=\"{Color(s)}\"><title>{Escape(series[s].Name)}: {p.Y:G4}</title></rect>\n");
        }
        XAxisLine(svg, xLabel);
        Legend(svg, series, lines: false);
        return End(svg);
    }

    /// <summary>
    /// Lines with markers. X is drawn on a log2 axis when <paramref name="logX"/> (context lengths: 1k, 2k, 4k...), Y on
    /// a log10 axis when <paramref name="logY"/> (times spanning decades).
    /// </summary>
    public static string Lines(string title, string xLabel, string yLabel, IReadOnlyList<ChartSeries> series, bool logX, bool logY,
        Func<double, string> xFormat, double? yMin = null, double? yMax = null)
    {
        var svg = Start(title);
        var xs = series.SelectMany(s => s.Points.Select(p => p.X)).Distinct().Order().ToList();
        var ys = series.SelectMany(s => s.Points.Select(p => p.Y)).Where(y => !logY || y > 0).ToList();
        if (xs.Count == 0 || ys.Count == 0) throw new ApbException("a chart needs at least one measured point; none of the results has a value to draw");
        double Tx(double x) => logX ? Math.Log2(x) : x;
        double Ty(double y) => logY ? Math.Log10(y) : y;
        double xLo = Tx(xs[0]), xHi = Tx(xs[^1]);
        if (xHi - xLo < 1e-9) { xLo -= 1; xHi += 1; }
        double yLo = yMin is double a ? Ty(a) : Ty(ys.Min()), yHi = yMax is double b ? Ty(b) : Ty(ys.Max());
        if (yMin is null || yMax is null)
        {
            double pad = Math.Max(0.05 * (yHi - yLo), logY ? 0.1 : Math.Abs(yHi) * 0.05 + 1e-9);
            if (yMin is null) yLo -= pad;
            if (yMax is null) yHi += pad;
        }
        double plotW = Width - Left - Right, plotH = Height - Top - Bottom;
        double X(double x) => Left + plotW * 0.04 + plotW * 0.92 * (Tx(x) - xLo) / (xHi - xLo);
        double Y(double y) => Top + plotH * (1 - (Ty(y) - yLo) / (yHi - yLo));
        var yTicks = logY ? LogTicks(yLo, yHi) : Ticks(yLo, yHi);
        YAxis(svg, yTicks, Y, yLabel, logY);
        foreach (double x in xs) Text(svg, X(x), Top + plotH + 16, xFormat(x), "middle", 11);
        XAxisLine(svg, xLabel);
        for (int s = 0; s < series.Count; s++)
        {
            var pts = series[s].Points.Where(p => !logY || p.Y > 0).OrderBy(p => p.X).ToList();
            if (pts.Count > 1)
                svg.Append(Inv, $"<polyline fill=\"none\" stroke=\"{Color(s)}\" stroke-width=\"2.5\" points=\"{string.Join(' ', pts.Select(p => string.Create(Inv, $"{X(p.X):F1},{Y(p.Y):F1}")))}\"/>\n");
            foreach (var p in pts)
                svg.Append(Inv, $"<circle cx=\"{X(p.X):F1}\" cy=\"{Y(p.Y):F1}\" r=\"4.5\" fill=\"{Color(s)}\"><title>{Escape(series[s].Name)}: {p.Y:G4} at {xFormat(p.X)}</title></circle>\n");
        }
        Legend(svg, series, lines: true);
        return End(svg);
    }

    /// <summary>Context lengths as people write them: 512, 4k, 128k, 1M.</summary>
    public static string Tokens(double n) => n switch
    {
        >= 1 << 20 when n % (1 << 20) == 0 => $"{n / (1 << 20):0}M",
        >= 1024 when n % 1024 == 0 => $"{n / 1024:0}k",
        _ => n.ToString("0", Inv),
    };

    static string Color(int s) => Palette[s % Palette.Length];

    static StringBuilder Start(string title)
    {
        var svg = new StringBuilder();
        svg.Append(Inv, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"DejaVu Sans, Arial, sans-serif\">\n");
        svg.Append(Inv, $"<rect width=\"{Width}\" height=\"{Height}\" fill=\"white\"/>\n");
        Text(svg, (Width - Right + Left) / 2.0, 28, title, "middle", 16);
        return svg;
    }

    static string End(StringBuilder svg) => svg.Append("</svg>\n").ToString();

    static void YAxis(StringBuilder svg, IReadOnlyList<double> ticks, Func<double, double> y, string label, bool log = false)
    {
        foreach (double t in ticks)
        {
            double v = log ? Math.Pow(10, t) : t;
            svg.Append(Inv, $"<line x1=\"{Left}\" x2=\"{Width - Right}\" y1=\"{y(v):F1}\" y2=\"{y(v):F1}\" stroke=\"#e0e0e0\"/>\n");
            Text(svg, Left - 6, y(v) + 4, v.ToString("G4", Inv), "end", 11);
        }
        svg.Append(Inv, $"<line x1=\"{Left}\" x2=\"{Left}\" y1=\"{Top}\" y2=\"{Height - Bottom}\" stroke=\"black\"/>\n");
        Text(svg, 18, Top + (Height - Top - Bottom) / 2.0, label, "middle", 12, rotate: true);
    }

    static void XAxisLine(StringBuilder svg, string label)
    {
        svg.Append(Inv, $"<line x1=\"{Left}\" x2=\"{Width - Right}\" y1=\"{Height - Bottom}\" y2=\"{Height - Bottom}\" stroke=\"black\"/>\n");
        Text(svg, Left + (Width - Left - Right) / 2.0, Height - 18, label, "middle", 12);
    }

    static void Legend(StringBuilder svg, IReadOnlyList<ChartSeries> series, bool lines)
    {
        double x = Width - Right + 16, y = Top + 10;
        for (int s = 0; s < series.Count; s++, y += 22)
        {
            svg.Append(lines
                ? string.Create(Inv, $"<line x1=\"{x:F1}\" x2=\"{x + 22:F1}\" y1=\"{y:F1}\" y2=\"{y:F1}\" stroke=\"{Color(s)}\" stroke-width=\"3\"/>\n")
                : string.Create(Inv, $"<rect x=\"{x:F1}\" y=\"{y - 6:F1}\" width=\"22\" height=\"12\" fill=\"{Color(s)}\"/>\n"));
            Text(svg, x + 28, y + 4, series[s].Name, "start", 12);
        }
    }

    static void Text(StringBuilder svg, double x, double y, string text, string anchor, int size, bool rotate = false)
    {
        string transform = rotate ? string.Create(Inv, $" transform=\"rotate({(x < Left ? -90 : 30)} {x:F1} {y:F1})\"") : "";
        if (rotate && x >= Left) anchor = "start";
        svg.Append(Inv, $"<text x=\"{x:F1}\" y=\"{y:F1}\" text-anchor=\"{anchor}\" font-size=\"{size}\"{transform}>{Escape(text)}</text>\n");
    }

    static string Escape(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&quot;");

    /// <summary>About five round ticks (1, 2 or 5 times a power of ten) covering [lo, hi].</summary>
    static List<double> Ticks(double lo, double hi)
    {
        double raw = (hi - lo) / 5, mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1.0, 2, 5, 10 }.Select(m => m * mag).First(s => s >= raw);
        var ticks = new List<double>();
        for (double t = Math.Ceiling(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.Add(Math.Round(t / step) * step);
        return ticks;
    }

    /// <summary>Exponents of the 1-2-5 values inside [lo, hi] (log10 units).</summary>
    static List<double> LogTicks(double lo, double hi)
    {
        var ticks = new List<double>();
        for (int e = (int)Math.Floor(lo); e <= (int)Math.Ceiling(hi); e++)
            foreach (double m in new[] { 1.0, 2, 5 })
            {
                double t = e + Math.Log10(m);
                if (t >= lo && t <= hi) ticks.Add(t);
            }
        return ticks;
    }
}
