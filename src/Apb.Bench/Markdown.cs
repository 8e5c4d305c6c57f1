using System.Globalization;

namespace Apb.Bench;

/// <summary>Number and cell formatting shared by the bench reports: invariant culture, markdown-safe text.</summary>
public static class Markdown
{
    public static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Text for a markdown table cell.</summary>
    public static string Cell(string? s) => s is null ? "" : s.Replace("|", "\\|").Replace("\n", " ");

    /// <summary>x in the given format, or "-" when it is not a finite number.</summary>
    public static string F(double x, string format = "F3") => double.IsFinite(x) ? x.ToString(format, Inv) : "-";

    /// <summary>A parameter count as people say it: 1.7M, 8.03B (a tiny model is not "0.00B").</summary>
    public static string Count(long n) => n switch
    {
        >= 1_000_000_000 => (n / 1e9).ToString("0.00", Inv) + "B",
        >= 1_000_000 => (n / 1e6).ToString("0.0", Inv) + "M",
        >= 1_000 => (n / 1e3).ToString("0.0", Inv) + "K",
        _ => n.ToString(Inv),
    };

    /// <summary>Scientific notation with a two-digit exponent (1.234e+05; .NET's "E3" writes 1.234E+005).</summary>
    public static string Sci(double x, int digits = 3) => double.IsNaN(x) ? "NaN" : x.ToString("0." + new string('0', digits) + "e+00", Inv);
}
