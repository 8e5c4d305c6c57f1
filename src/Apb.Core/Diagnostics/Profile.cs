using System.Diagnostics;
using Apb.Backends;

namespace Apb.Diagnostics;

/// <summary>
/// Per-rank time by phase (<see cref="Phases"/>), bytes sent and attention FLOPs,
/// summed over layers, and the host&lt;-&gt;device copies the backend made (<see cref="HostTransfers"/>): in all, and inside
/// the layers apart from the communicator's (an in-process group passes tensors through host memory, NCCL does not).
/// Measuring synchronizes the backend at phase edges, so it is off unless asked for (--timings): then the numbers say
/// where time goes, at some cost in overlap.
/// </summary>
public sealed class Profile
{
    /// <summary>The phases, in report order; "scoring" and "selection" (top-k and the passing block's gather) are APB's own.</summary>
    public static readonly string[] Phases = ["qkv", "scoring", "selection", "communication", "attention", "o_proj", "ffn", "other"];

    readonly IBackend? _backend;
    readonly Dictionary<string, TimeSpan> _times = new(StringComparer.Ordinal);

    readonly HostTransfers _start;
    int _layerDepth;

    public Profile(IBackend? backend = null)
    {
        _backend = backend;
        _start = backend?.Transfers ?? default;
    }

    public long BytesSent { get; private set; }
    public long BytesReceived { get; private set; }
    public double AttentionFlops { get; private set; }
    /// <summary>Host&lt;-&gt;device bytes from the profile's start to the end of the last phase or layer measured.</summary>
    public long HostBytes { get; private set; }
    /// <summary>Host&lt;-&gt;device copies inside <see cref="Layer"/> brackets, less those of the communication phase.</summary>
    public HostTransfers LayerTransfers { get; private set; }
    public IReadOnlyDictionary<string, TimeSpan> Times => _times;
    public TimeSpan Total => _times.Values.Aggregate(TimeSpan.Zero, (a, b) => a + b);

    public Scope Measure(string phase)
    {
        _backend?.Synchronize();
        return new Scope(this, phase, Stopwatch.GetTimestamp(), Transfers);
    }

    /// <summary>Brackets one layer of a forward pass: what it copies between host and device counts in <see cref="LayerTransfers"/>.</summary>
    public LayerScope Layer()
    {
        _layerDepth++;
        return new LayerScope(this, Transfers);
    }

    HostTransfers Transfers => _backend?.Transfers ?? default;

    void Seen(HostTransfers now) => HostBytes = (now - _start).Bytes;

    public void AddBytes(long sent, long received) { BytesSent += sent; BytesReceived += received; }

    /// <summary>4 x d FLOPs per visible (query, key, head) pair: q.k and p.v, a multiply and an add each.</summary>
    public void AddAttention(double visiblePairs, int heads, int headDim) => AttentionFlops += 4.0 * visiblePairs * heads * headDim;

    public void Add(string phase, TimeSpan t) => _times[phase] = _times.GetValueOrDefault(phase) + t;

    /// <summary>
    /// Entries of <see cref="ToValues"/>: ms per phase, bytes sent, bytes received, attention FLOPs, host bytes, then the
    /// layers' host transfers (bytes and copies to the device, bytes and copies to the host).
    /// </summary>
    public static int ValueCount => Phases.Length + 8;

    /// <summary>The profile as numbers, for sending to another rank (<see cref="FromValues"/> reads them back).</summary>
    public double[] ToValues() =>
    [
        .. Phases.Select(p => _times.GetValueOrDefault(p).TotalMilliseconds), BytesSent, BytesReceived, AttentionFlops, HostBytes,
        LayerTransfers.ToDeviceBytes, LayerTransfers.ToDeviceCopies, LayerTransfers.ToHostBytes, LayerTransfers.ToHostCopies,
    ];

    public static Profile FromValues(ReadOnlySpan<double> v)
    {
        if (v.Length != ValueCount) throw new ArgumentException($"{v.Length} profile values, expected {ValueCount}");
        var p = new Profile();
        for (int i = 0; i < Phases.Length; i++) if (v[i] != 0) p.Add(Phases[i], TimeSpan.FromMilliseconds(v[i]));
        int k = Phases.Length;
        p.AddBytes((long)v[k], (long)v[k + 1]);
        p.AttentionFlops = v[k + 2];
        p.HostBytes = (long)v[k + 3];
        p.LayerTransfers = new((long)v[k + 4], (long)v[k + 5], (long)v[k + 6], (long)v[k + 7]);
        return p;
    }

    public readonly struct Scope(Profile p, string phase, long start, HostTransfers startTransfers) : IDisposable
    {
        public void Dispose()
        {
            p._backend?.Synchronize();
            p.Add(phase, Stopwatch.GetElapsedTime(start));
            var now = p.Transfers;
            p.Seen(now);
            // The communicator's copies are its transport, not the layer's own: they leave the layer's count.
            if (phase == "communication" && p._layerDepth > 0) p.LayerTransfers -= now - startTransfers;
        }
    }

    public readonly struct LayerScope(Profile p, HostTransfers start) : IDisposable
    {
        public void Dispose()
        {
            var now = p.Transfers;
            p._layerDepth--;
            p.LayerTransfers += now - start;
            p.Seen(now);
        }
    }
}
