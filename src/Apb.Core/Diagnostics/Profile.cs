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

    /// <summary>Entries of <see cref="ToValues"/>: ms per phase, bytes sent, bytes received, attention FLOPs.</summary>
    public static int ValueCount => Phases.Length + 3;

    /// <summary>The profile as numbers, for sending to another rank (<see cref="FromValues"/> reads them back).</summary>
    public double[] ToValues() =>
        [.. Phases.Select(p => _times.GetValueOrDefault(p).TotalMilliseconds), BytesSent, BytesReceived, AttentionFlops];

    public static Profile FromValues(ReadOnlySpan<double> v)
    {
        if (v.Length != ValueCount) throw new ArgumentException($"{v.Length} profile values, expected {ValueCount}");
        var p = new Profile();
        for (int i = 0; i < Phases.Length; i++) if (v[i] != 0) p.Add(Phases[i], TimeSpan.FromMilliseconds(v[i]));
        int k = Phases.Length;
        p.AddBytes((long)v[k], (long)v[k + 1]);
        p.AttentionFlops = v[k + 2];
        return p;
    }

    public readonly struct Scope(Profile p, string phase, long start) : IDisposable
    {
        public void Dispose()
        {
            p._backend?.Synchronize();
            p.Add(phase, Stopwatch.GetElapsedTime(start));
        }
    }
}
