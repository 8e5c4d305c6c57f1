using Apb.Backends.Cuda.Native;

namespace Apb.Backends.Cuda;

/// <summary>
/// Device time per kernel name, for finding where a decode step's time goes (APB_KERNEL_TIMES=1; `apb bench decode`
/// prints the table). Each launch is bracketed by two events on the stream; the times are read at the next
/// synchronization. The events sit between kernels, so programmatic launches no longer overlap and each kernel's time
/// includes its own ramp: the sum over kernels, against the step's time without the timer, bounds what launch gaps
/// cost. Not for production runs: two event records per launch.
/// </summary>
public sealed unsafe class KernelTimes : IDisposable
{
    readonly nint _stream;
    readonly Stack<nint> _free = new();
    readonly List<(string Name, nint Start, nint End)> _pending = [];
    readonly Dictionary<string, (long Count, double Ms)> _totals = new(StringComparer.Ordinal);

    public KernelTimes(nint stream) => _stream = stream;

    /// <summary>Records the event that opens a launch's bracket.</summary>
    public nint Begin()
    {
        nint e = Event();
        Driver.Check(Driver.cuEventRecord(e, _stream), "cuEventRecord (kernel timer)");
        return e;
    }

    /// <summary>Closes the bracket opened by <see cref="Begin"/> for the launch of <paramref name="name"/>.</summary>
    public void End(string name, nint start)
    {
        nint e = Event();
        Driver.Check(Driver.cuEventRecord(e, _stream), "cuEventRecord (kernel timer)");
        _pending.Add((name, start, e));
    }

    /// <summary>Adds the brackets queued so far to the totals; the stream must be synchronized first.</summary>
    public void Collect()
    {
        foreach (var (name, start, end) in _pending)
        {
            float ms;
            Driver.Check(Driver.cuEventElapsedTime(&ms, start, end), "cuEventElapsedTime (kernel timer)");
            var (count, total) = _totals.GetValueOrDefault(name);
            _totals[name] = (count + 1, total + ms);
            _free.Push(start);
            _free.Push(end);
        }
        _pending.Clear();
    }

    /// <summary>Forgets the totals (the pending brackets of unsynchronized work are kept).</summary>
    public void Reset() => _totals.Clear();

    /// <summary>(kernel, launches, milliseconds) since the last <see cref="Reset"/>, the largest time first.</summary>
    public IReadOnlyList<(string Name, long Count, double Ms)> Totals() =>
        _totals.Select(kv => (kv.Key, kv.Value.Count, kv.Value.Ms)).OrderByDescending(t => t.Ms).ToList();

    nint Event()
    {
        if (_free.TryPop(out var e)) return e;
        Driver.Check(Driver.cuEventCreate(&e, Driver.CU_EVENT_DEFAULT), "cuEventCreate (kernel timer)");
        return e;
    }

    public void Dispose()
    {
        foreach (var (_, s, e) in _pending) { Driver.cuEventDestroy(s); Driver.cuEventDestroy(e); }
        while (_free.TryPop(out var e)) Driver.cuEventDestroy(e);
        _pending.Clear();
    }
}
