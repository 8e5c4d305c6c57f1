using Apb.Backends.Cuda;
using Apb.Backends.Cuda.Native;

namespace Apb.Bench.Timing;

/// <summary>
/// Device time of GPU work: two CUDA events recorded on the backend's stream around it, so the host's launch overhead
/// and queueing do not count. Benchmark code only; the backend itself has no timing hooks.
/// </summary>
public sealed unsafe class GpuTimer : IDisposable
{
    readonly CudaBackend _gpu;
    nint _start, _stop;

    public GpuTimer(CudaBackend gpu)
    {
        _gpu = gpu;
        gpu.Context.MakeCurrent();
        nint start, stop;
        Driver.Check(Driver.cuEventCreate(&start, Driver.CU_EVENT_DEFAULT), "cuEventCreate");
        Driver.Check(Driver.cuEventCreate(&stop, Driver.CU_EVENT_DEFAULT), "cuEventCreate");
        _start = start; _stop = stop;
    }

    /// <summary>Milliseconds of device time <paramref name="work"/> takes (waits for it to finish).</summary>
    public double Ms(Action work)
    {
        var ctx = _gpu.Context;
        ctx.MakeCurrent();
        Driver.Check(Driver.cuEventRecord(_start, ctx.Stream), "cuEventRecord");
        work();
        Driver.Check(Driver.cuEventRecord(_stop, ctx.Stream), "cuEventRecord");
        Driver.Check(Driver.cuEventSynchronize(_stop), "cuEventSynchronize (the timed work failed)");
        float ms;
        Driver.Check(Driver.cuEventElapsedTime(&ms, _start, _stop), "cuEventElapsedTime");
        return ms;
    }

    /// <summary>
    /// Warm-up calls (at least <paramref name="warmup"/>, and more until <paramref name="warmupMs"/> of device time has
    /// run), then the device time of each of <paramref name="repeats"/> calls.
    /// </summary>
    /// <remarks>
    /// Why warm up by time: an H100 at rest boosts to 1980 MHz and, under a heavy kernel, drops to ~1500-1600 MHz at its
    /// 700 W limit within ~200-300 ms (nvidia-smi every 20 ms, bench/results/attention-sustained-20261205). A row of 20
    /// calls of 3 ms is over before that, so it times the burst clock: bf16 causal attention at 16K read 677-693 TFLOP/s
    /// that way and 614-627 with 400 calls. A long prefill runs at the limited clock, so the rate it sees is the one
    /// after the warm-up.
    /// </remarks>
    public TimingStats Measure(Action work, int repeats, int warmup = 1, int warmupMs = 0)
    {
        for (int i = 0; i < warmup; i++) work();
        _gpu.Synchronize();
        WarmUp(() => Ms(work), warmupMs);
        return TimingStats.Of(Enumerable.Range(0, Math.Max(repeats, 1)).Select(_ => Ms(work)).ToArray());
    }

    /// <summary>The most calls a warm-up makes: it ends a harness whose call takes microseconds, whatever its budget.</summary>
    public const int MaxWarmUpCalls = 1_000_000;

    /// <summary>
    /// Runs <paramref name="timedCall"/> (one call, returning its milliseconds) until the calls add up to
    /// <paramref name="warmupMs"/> or <see cref="MaxWarmUpCalls"/> were made; returns how many ran.
    /// </summary>
    public static int WarmUp(Func<double> timedCall, int warmupMs)
    {
        double warmed = 0;
        int calls = 0;
        while (warmed < warmupMs && calls < MaxWarmUpCalls) { warmed += timedCall(); calls++; }
        return calls;
    }

    public void Dispose()
    {
        if (_start == 0) return;
        _gpu.Context.MakeCurrent();
        Driver.cuEventDestroy(_start);
        Driver.cuEventDestroy(_stop);
        _start = _stop = 0;
    }
}
