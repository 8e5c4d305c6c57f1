using ScottPlot;
using SkiaSharp;

namespace Apb.Charts;

/// <summary>Shared look: the embedded font, per-strategy colours, axis helpers.</summary>
static class ChartStyle
{
    public const string FontName = "DejaVu Sans";
    static readonly Lock Gate = new();
    static bool _fontReady;

    /// <summary>
    /// Registers the embedded DejaVu Sans as the answer to every font request, so text renders the same on a machine
    /// with no system fonts at all (SkiaSharp's NoDependencies build has no fontconfig to find them anyway).
    /// </summary>
    public static void EnsureFont()
    {
        lock (Gate)
        {
            if (_fontReady) return;
            Fonts.FontResolvers.Insert(0, new EmbeddedFontResolver());
            Fonts.Default = FontName;
            _fontReady = true;
        }
    }

    sealed class EmbeddedFontResolver : IFontResolver
    {
        readonly byte[] _data;

        public EmbeddedFontResolver()
        {
            using var s = typeof(ChartStyle).Assembly.GetManifestResourceStream("Apb.Charts.DejaVuSans.ttf")
                ?? throw new InvalidOperationException("embedded font Apb.Charts.DejaVuSans.ttf is missing");
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            _data = ms.ToArray();
        }

        // ScottPlot disposes what it gets; hand out a fresh typeface each time.
        public SKTypeface? CreateTypeface(string fontName, FontWeight weight, FontSlant slant, FontSpacing width) => Create();
        public SKTypeface? CreateTypeface(string fontName, bool bold, bool italic) => Create();
        SKTypeface Create() => SKTypeface.FromData(SKData.CreateCopy(_data));
    }

    static readonly Dictionary<string, string> Known = new(StringComparer.OrdinalIgnoreCase)
    {
        ["full"] = "#555555", ["apb"] = "#d62728", ["star"] = "#ff7f0e", ["zigzag"] = "#2ca02c",
        ["ulysses"] = "#9467bd", ["ring"] = "#1f77b4", ["hf"] = "#000000",
    };
    static readonly string[] Spare = ["#17becf", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78"];

    /// <summary>A colour per series label ("apb x4" → apb's red); unknown strategies take spare colours in order.</summary>
    public static Color[] Colors(IReadOnlyList<string> labels)
    {
        int spare = 0;
        var used = new HashSet<string>();
        var result = new Color[labels.Count];
        for (int i = 0; i < labels.Count; i++)
        {
            string head = labels[i].Split(' ')[0];
            string hex = Known.TryGetValue(head, out var k) && used.Add(k) ? k : Spare[spare++ % Spare.Length];
            result[i] = Color.FromHex(hex);
        }
        return result;
    }

    public static Plot NewPlot(string title, string xLabel, string yLabel)
    {
        EnsureFont();
        var plot = new Plot();
        plot.Title(title, size: 17);
        plot.XLabel(xLabel, size: 15);
        plot.YLabel(yLabel, size: 15);
        plot.Axes.Bottom.TickLabelStyle.FontSize = 13;
        plot.Axes.Left.TickLabelStyle.FontSize = 13;
        plot.Legend.FontSize = 13;
        return plot;
    }

    /// <summary>"1K", "128K", "1M", or the plain number of tokens.</summary>
    /// <summary>
    /// A context-length x axis: log2 positions, one labelled tick per length, padded at both ends. Returns the x limits.
    /// </summary>
    public static (double Lo, double Hi) LengthAxis(Plot plot, IReadOnlyList<int> lengths)
    {
        plot.Axes.Bottom.SetTicks(lengths.Select(l => Math.Log2(l)).ToArray(), lengths.Select(Tokens).ToArray());
        double lo = Math.Log2(lengths[0]), hi = Math.Log2(lengths[^1]), pad = Math.Max(0.25, (hi - lo) * 0.06);
        return (lo - pad, hi + pad);
    }

    /// <summary>A 0-100 % y axis labelled every 20.</summary>
    public static void PercentTicks(Plot plot) => plot.Axes.Left.SetTicks([0, 20, 40, 60, 80, 100], ["0", "20", "40", "60", "80", "100"]);

    public static string Tokens(int n) =>
        n >= 1 << 20 && n % (1 << 20) == 0 ? $"{n >> 20}M" : n >= 1024 && n % 1024 == 0 ? $"{n >> 10}K" : n.ToString();

    public static void Save(Plot plot, string path)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null && !Directory.Exists(dir)) throw new ChartInputException($"{path}: output folder {dir} does not exist");
        plot.SavePng(path, ChartsCli.Width, ChartsCli.Height);
    }
}
