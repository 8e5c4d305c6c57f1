using System.Globalization;
using System.Text;

namespace Apb.Diagnostics;

/// <summary>
/// A plain-text table of per-rank profiles: ms per phase, bytes sent and received, attention GFLOP, and a last row of
/// max/mean per column. A rank's total is its critical path, so the slowest rank sets the step time: an imbalance of
/// 1.00 is perfect balance, and the attention column shows why a contiguous ring (rank H-1 does H times rank 0's causal
/// work) loses to zigzag and APB. Communication time includes waiting for the peers to arrive, so a fast rank shows its
/// idle time there.
/// </summary>
public static class RankProfileTable
{
    /// <param name="firstRank">the rank of profiles[0]: one process of a launched group holds only its own rank's</param>
    public static string Format(string title, IReadOnlyList<Profile> profiles, int firstRank = 0)
    {
        var inv = CultureInfo.InvariantCulture;
        var headers = new List<string> { "rank" };
        headers.AddRange(Profile.Phases.Select(p => p + " ms"));
        headers.AddRange(["total ms", "sent MB", "recv MB", "attn GFLOP"]);

        var values = profiles.Select(p =>
        {
            var v = Profile.Phases.Select(ph => p.Times.GetValueOrDefault(ph).TotalMilliseconds).ToList();
            v.Add(p.Total.TotalMilliseconds);
            v.Add(p.BytesSent / 1e6);
            v.Add(p.BytesReceived / 1e6);
            v.Add(p.AttentionFlops / 1e9);
            return v;
        }).ToList();

        var rows = new List<string[]>();
        for (int r = 0; r < values.Count; r++)
            rows.Add([(firstRank + r).ToString(inv), .. values[r].Select(x => x.ToString(x >= 100 ? "0" : "0.000", inv))]);
        if (values.Count > 1)
        {
            var imbalance = new List<string> { "max/mean" };
            for (int c = 0; c < values[0].Count; c++)
            {
                double max = values.Max(v => v[c]), mean = values.Average(v => v[c]);
                imbalance.Add(mean > 0 ? (max / mean).ToString("0.00", inv) : "-");
            }
            rows.Add(imbalance.ToArray());
        }

        var width = headers.Select((h, c) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[c].Length))).ToArray();
        var sb = new StringBuilder();
        sb.AppendLine(title);
        sb.AppendLine(string.Join("  ", headers.Select((h, c) => c == 0 ? h.PadRight(width[c]) : h.PadLeft(width[c]))));
        foreach (var row in rows)
            sb.AppendLine(string.Join("  ", row.Select((x, c) => c == 0 ? x.PadRight(width[c]) : x.PadLeft(width[c]))));
        return sb.ToString();
    }
}
