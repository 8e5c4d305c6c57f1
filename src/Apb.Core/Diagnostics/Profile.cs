using System.Diagnostics;
using Apb.Backends;

namespace Apb.Diagnostics;

/// <summary>
/// Per-rank time by phase (qkv, scoring, communication, attention, o_proj, ffn, other), bytes sent and attention FLOPs,
/// summed over layers. Measuring synchronizes the backend at phase edges, so it is off unless asked for (--timings):
/// then the numbers say where time goes, at some cost in overlap.
/// </summary>
public sealed class Profile
{
    public static readonly string[] Phases = ["qkv", "scoring", "communication", "attention", "o_proj", "ffn", "other"];

    readonly IBackend? _backend;
    readonly Dictionary<string, TimeSpan> _times = new(StringComparer.Ordinal);

    public Profile(IBackend? backend = null) { _backend = backend; }

    public long BytesSent { get; private set; }
    public long BytesReceived { get; private set; }
    public double AttentionFlops { get; private set; }
    public IReadOnlyDictionary<string, TimeSpan> Times => _times;
    public TimeSpan Total => _times.Values.Aggregate(TimeSpan.Zero, (a, b) => a + b);

    public Scope Measure(string phase)
    {
        _backend?.Synchronize();
        return new Scope(this, phase, Stopwatch.GetTimestamp());
    }

    public void AddBytes(long sent, long received) { BytesSent += sent; BytesReceived += received; }

    /// <summary>4 x d FLOPs per visible (query, key, head) pair: q.k and p.v, a multiply and an add each.</summary>
    public void AddAttention(double visiblePairs, int heads, int headDim) => AttentionFlops += 4.0 * visiblePairs * heads * headDim;

    public void Add(string phase, TimeSpan t) => _times[phase] = _times.GetValueOrDefault(phase) + t;

    public readonly struct Scope(Profile p, string phase, long start) : IDisposable
    {
        public void Dispose()
        {
            p._backend?.Synchronize();
            p.Add(phase, Stopwatch.GetElapsedTime(start));
        }
    }
}
