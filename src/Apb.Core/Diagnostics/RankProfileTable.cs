using System.Globalization;
using System.Text;

namespace Apb.Diagnostics;

/// <summary>
/// A table of per-rank profiles: ms per phase, bytes sent and received, attention GFLOP, host&lt;-&gt;device MB (in all,
/// and inside the layers less the communicator's: 0 is APB's machinery making no round trip through the host), and a
/// last row of max/mean per column. A rank's total is its critical path, so the slowest rank sets the step time: an imbalance of 1.00 is perfect
/// balance, and the attention column shows why a contiguous ring (rank H-1 does H times rank 0's causal work) loses to
/// zigzag and APB. Communication time includes waiting for the peers to arrive, so a fast rank shows its idle time
/// there. <see cref="Format"/> prints it (the CLI's --timings); <see cref="Columns"/>, <see cref="Values"/> and
/// <see cref="Imbalance"/> are the same numbers for other renderers (the server's "timings").
/// </summary>
public static class RankProfileTable
{
    /// <summary>The value columns, in order (the rank is not one of them).</summary>
    public static IReadOnlyList<string> Columns { get; } =
        [.. Profile.Phases.Select(p => p + " ms"), "total ms", "sent MB", "recv MB", "attn GFLOP", "host MB", "layer host MB"];

    /// <summary>One rank's row: a value per <see cref="Columns"/> entry.</summary>
    public static double[] Values(Profile p) =>
    [
        .. Profile.Phases.Select(ph => p.Times.GetValueOrDefault(ph).TotalMilliseconds),
        p.Total.TotalMilliseconds, p.BytesSent / 1e6, p.BytesReceived / 1e6, p.AttentionFlops / 1e9,
        p.HostBytes / 1e6, p.LayerTransfers.Bytes / 1e6,
    ];

    /// <summary>Max over mean per column across ranks; null where the column is all zero (nothing to balance).</summary>
    public static double?[] Imbalance(IReadOnlyList<double[]> rows) =>
        Enumerable.Range(0, Columns.Count).Select(c =>
        {
            double max = rows.Max(v => v[c]), mean = rows.Average(v => v[c]);
            return mean > 0 ? max / mean : (double?)null;
        }).ToArray();

    /// <param name="firstRank">the rank of profiles[0]: one process of a launched group holds only its own rank's</param>
    public static string Format(string title, IReadOnlyList<Profile> profiles, int firstRank = 0)
    {
        var inv = CultureInfo.InvariantCulture;
        var headers = new List<string> { "rank" };
        headers.AddRange(Columns);
        var values = profiles.Select(Values).ToList();

        var rows = new List<string[]>();
        for (int r = 0; r < values.Count; r++)
            rows.Add([(firstRank + r).ToString(inv), .. values[r].Select(x => x.ToString(x >= 100 ? "0" : "0.000", inv))]);
        if (values.Count > 1)
            rows.Add(["max/mean", .. Imbalance(values).Select(x => x is double d ? d.ToString("0.00", inv) : "-")]);

        var width = headers.Select((h, c) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[c].Length))).ToArray();
        var sb = new StringBuilder();
        sb.AppendLine(title);
        sb.AppendLine(string.Join("  ", headers.Select((h, c) => c == 0 ? h.PadRight(width[c]) : h.PadLeft(width[c]))));
        foreach (var row in rows)
            sb.AppendLine(string.Join("  ", row.Select((x, c) => c == 0 ? x.PadRight(width[c]) : x.PadLeft(width[c]))));
        return sb.ToString();
    }
}
