using Apb.Diagnostics;

namespace Apb.Bench.Prefill;

/// <summary>
/// A case's prefill as it would run with each rank on its own GPU, modeled from its instrumented run: the slowest rank's
/// compute (its measured total less communication, which on in-process ranks is mostly waiting for the others) plus
/// the most bytes any rank sends or receives over a link of <see cref="LinkGBps"/> per direction. Serial: no transfer
/// hidden behind compute, the same for every strategy (ring/zigzag and APB all overlap some of theirs in practice:
/// <see cref="OverlappedSeconds"/> is that other bound). The per-rank machinery share is APB's scoring and selection
/// (top-k and gather) against that rank's attention time.
/// </summary>
public sealed record PrefillModel(double BusyMs, double TransferMs, double LinkGBps, double[] MachineryOverAttention)
{
    /// <summary>NVLink 4 on an H200 SXM: 18 links x 50 GB/s both ways = 900 GB/s per GPU, 450 GB/s in each direction.</summary>
    public const double NvLink4GBps = 450;

    public double Seconds => (BusyMs + TransferMs) / 1000;
    public double OverlappedSeconds => Math.Max(BusyMs, TransferMs) / 1000;

    /// <summary>The worst rank's (scoring + selection) / attention; null where no rank attended.</summary>
    public double? WorstMachineryShare => MachineryOverAttention.Where(double.IsFinite).DefaultIfEmpty(double.NaN).Max() is var m && double.IsFinite(m) ? m : null;

    static int Phase(string name) => Array.IndexOf(Profile.Phases, name);

    /// <param name="profiles">per rank, <see cref="RankProfileTable.Values"/></param>
    /// <param name="sentBytesScale">
    /// bytes on the link per byte counted: in-process ranks count 4 bytes per element where a GPU sends its activation
    /// type (bf16: 0.5); 1 where the communicator counted what it sent (NCCL)
    /// </param>
    public static PrefillModel From(double[][] profiles, double linkGBps, double sentBytesScale)
    {
        if (!(linkGBps > 0)) throw new ApbException($"--link-gbps must be above 0, got {linkGBps}");
        int total = Profile.Phases.Length, comm = Phase("communication"), attn = Phase("attention");
        double busy = profiles.Max(p => p[total] - p[comm]);
        double mb = profiles.Max(p => Math.Max(p[total + 1], p[total + 2])) * sentBytesScale;
        var share = profiles.Select(p => p[attn] > 0 ? (p[Phase("scoring")] + p[Phase("selection")]) / p[attn] : double.NaN).ToArray();
        return new PrefillModel(busy, mb / linkGBps, linkGBps, share); // MB / (GB/s) = ms
    }

    /// <summary>One rank's "scoring / selection / comm / attn / ffn" ms, as the report prints it.</summary>
    public static string RankPhases(double[] p) =>
        string.Join(" / ", new[] { "scoring", "selection", "communication", "attention", "ffn" }.Select(ph => p[Phase(ph)].ToString("F0", System.Globalization.CultureInfo.InvariantCulture)));
}
