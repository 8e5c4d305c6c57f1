using Apb.Backends;
using Apb.Diagnostics;

namespace Apb.Runtime;

/// <summary>
/// One rank's account of a sequence, gathered to rank 0 from every process (<see cref="RankGroup.Reports"/>): where its
/// prefill's time went, where the rank's decode steps' time went (all sequences: steps are batched), and its memory.
/// Profiles are null unless the group records timings. Values travel as fp32.
/// </summary>
public sealed record RankReport(int Rank, Profile? Prefill, Profile? Decode, MemoryStats Memory)
{
    /// <summary>Numbers per rank on the wire: a flag and a profile for prefill and for decode, then in-use and peak bytes.</summary>
    public static int ValueCount => 2 * (1 + Profile.ValueCount) + 2;

    public static RankReport Read(int rank, ReadOnlySpan<float> v)
    {
        if (v.Length != ValueCount) throw new ArgumentException($"{v.Length} report values, expected {ValueCount}");
        int k = Profile.ValueCount;
        double[] D(ReadOnlySpan<float> s) { var d = new double[s.Length]; for (int i = 0; i < s.Length; i++) d[i] = s[i]; return d; }
        var prefill = v[0] != 0 ? Profile.FromValues(D(v.Slice(1, k))) : null;
        var decode = v[1 + k] != 0 ? Profile.FromValues(D(v.Slice(2 + k, k))) : null;
        return new RankReport(rank, prefill, decode, new MemoryStats((long)v[2 + 2 * k], (long)v[3 + 2 * k], 0, 0));
    }
}
