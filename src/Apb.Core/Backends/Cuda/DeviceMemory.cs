using Apb.Backends.Cuda.Native;

namespace Apb.Backends.Cuda;

/// <summary>
/// The backend's device memory: a pool of cuMemAlloc blocks kept by rounded size and reused, so a decode loop that
/// allocates the same shapes every step does not call the driver. Nothing here is reached by the GC: blocks go back to
/// the pool when their tensor is disposed and to the driver when the pool is.
/// Before asking the driver for a block that would not fit, the pool releases its idle blocks; if it still does not fit
/// it throws an ApbException with the numbers, instead of a bare CUDA_ERROR_OUT_OF_MEMORY later.
/// </summary>
public sealed unsafe class DeviceMemory : IDisposable
{
    readonly CudaContext _ctx;
    readonly Dictionary<long, Stack<ulong>> _idle = new();
    // Each live block's size and when it was rented (a counter, for ReleaseSince; 0 for the backend's own scratch).
    readonly Dictionary<ulong, (long Size, long Born)> _live = new();
    long _serial;

    public long BytesInUse { get; private set; }
    public long BytesIdle { get; private set; }
    public long PeakBytes { get; private set; }

    public DeviceMemory(CudaContext ctx) { _ctx = ctx; }

    /// <summary>Small blocks round to 512 bytes, large ones to 2 MiB (the driver's own granularity), so reuse finds matches.</summary>
    public static long RoundedSize(long bytes)
    {
        if (bytes <= 0) bytes = 1;
        long unit = bytes >= (1L << 21) ? 1L << 21 : 512;
        return (bytes + unit - 1) / unit * unit;
    }

    /// <param name="backendOwned">the backend's own long-lived scratch (index buffers, rope tables): never a run's
    /// tensor, so <see cref="ReleaseSince"/> leaves it alone</param>
    public ulong Rent(long bytes, string what, bool backendOwned = false)
    {
        long size = RoundedSize(bytes);
        if (_idle.TryGetValue(size, out var stack) && stack.Count > 0)
        {
            ulong p = stack.Pop();
            BytesIdle -= size;
            return Track(p, size, backendOwned);
        }
        _ctx.MakeCurrent();
        var (free, total) = _ctx.MemoryInfo();
        if (size > free && BytesIdle > 0)
        {
            Trim();
            (free, total) = _ctx.MemoryInfo();
        }
        if (size > free)
            throw new DeviceOutOfMemoryException($"{what} needs {Mib(size)} of GPU memory but only {Mib(free)} of {Mib(total)} is free on cuda:{_ctx.Device.Ordinal} " +
                                   $"(this backend holds {Mib(BytesInUse)}): use a shorter context, a smaller model, or more GPUs");
        ulong ptr;
        int rc = Driver.cuMemAlloc(&ptr, (nuint)size);
        if (rc == 2 /* CUDA_ERROR_OUT_OF_MEMORY */)
            throw new DeviceOutOfMemoryException($"{what} needs {Mib(size)} of GPU memory; the driver refused it with {Mib(free)} reported free (fragmentation or another process)");
        Driver.Check(rc, $"cuMemAlloc({size} bytes for {what})");
        return Track(ptr, size, backendOwned);
    }

    ulong Track(ulong p, long size, bool backendOwned)
    {
        _live[p] = (size, backendOwned ? 0 : ++_serial);
        BytesInUse += size;
        if (BytesInUse > PeakBytes) PeakBytes = BytesInUse;
        return p;
    }

    /// <summary>Returns a block to the pool. Work queued on the stream that still reads it is ordered before any reuse.</summary>
    public void Return(ulong ptr)
    {
        if (!_live.Remove(ptr, out var block)) return;
        long size = block.Size;
        BytesInUse -= size;
        BytesIdle += size;
        if (!_idle.TryGetValue(size, out var stack)) _idle[size] = stack = new Stack<ulong>();
        stack.Push(ptr);
    }

    /// <summary>Gives idle blocks back to the driver (after the stream is drained: a queued kernel may still read one).</summary>
    public void Trim()
    {
        _ctx.Synchronize();
        foreach (var s in _idle.Values)
            while (s.Count > 0) Driver.cuMemFree(s.Pop());
        _idle.Clear();
        BytesIdle = 0;
    }

    /// <summary>A point in the pool's history, for <see cref="ReleaseSince"/>.</summary>
    public long Mark() => _serial;

    /// <summary>Peak bytes in use from now on (benchmarks measure one run's peak).</summary>
    public void ResetPeak() => PeakBytes = BytesInUse;

    /// <summary>
    /// Benchmarks: returns to the pool every block rented after <paramref name="mark"/> and still live (the backend's own
    /// scratch excepted): the tensors of a finished run that nobody disposes (a session's workspace and caches).
    /// The caller guarantees no tensor of that run is used again; the stream is drained first.
    /// </summary>
    public int ReleaseSince(long mark)
    {
        _ctx.Synchronize();
        var old = _live.Where(kv => kv.Value.Born > mark).Select(kv => kv.Key).ToList();
        foreach (var p in old) Return(p);
        return old.Count;
    }

    static string Mib(long b) => b >= 1L << 30 ? $"{b / (double)(1L << 30):F2} GiB" : $"{b / (double)(1L << 20):F1} MiB";

    public void Dispose()
    {
        _ctx.MakeCurrent();
        Driver.cuStreamSynchronize(_ctx.Stream);
        foreach (var p in _live.Keys) Driver.cuMemFree(p);
        _live.Clear();
        foreach (var s in _idle.Values)
            while (s.Count > 0) Driver.cuMemFree(s.Pop());
        _idle.Clear();
        BytesInUse = BytesIdle = 0;
    }
}

/// <summary>A device allocation that does not fit: a benchmark reports the case as "oom" instead of an error.</summary>
public sealed class DeviceOutOfMemoryException(string message) : ApbException(message)
{
    /// <summary>Whether <paramref name="e"/> or an exception it wraps (a rank's failure inside the group's) is one.</summary>
    public static bool In(Exception? e)
    {
        for (; e != null; e = e.InnerException)
            if (e is DeviceOutOfMemoryException) return true;
        return false;
    }
}
