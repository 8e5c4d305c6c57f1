using Apb.Backends;

namespace Apb.Runtime;

/// <summary>
/// One rank's memory as that rank reports it: its backend's bytes (<see cref="MemoryStats"/>, zeros on the CPU), the
/// sequences it holds and the bytes of their KV caches. The last two are counted from the rank's own caches on every
/// backend, so a server on the CPU can show, and a test can check, that a finished or cancelled request left nothing.
/// </summary>
public readonly record struct RankMemoryUse(MemoryStats Device, int Sequences, long KvCacheBytes)
{
    /// <summary>Values per rank in the gathered form (see Rank.GatherMemory).</summary>
    internal const int ValueCount = 6;

    internal static RankMemoryUse Read(ReadOnlySpan<float> v) =>
        new(new MemoryStats((long)v[0], (long)v[1], (long)v[2], (long)v[3]), (int)v[4], (long)v[5]);
}
