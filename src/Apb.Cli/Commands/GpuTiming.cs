using Apb.Backends.Cuda;
using Apb.Backends.Cuda.Native;

namespace Apb.Cli.Commands;

/// <summary>Device time of GPU work, measured with events on the backend's stream (benchmarks only).</summary>
static unsafe class GpuTiming
{
    /// <summary>One warm-up call, then <paramref name="repeats"/> timed calls: the median (upper middle) and minimum, in ms.</summary>
    public static (double Median, double Min) MedianMs(CudaBackend gpu, Action work, int repeats)
    {
        work();
        gpu.Synchronize();
        var ms = new double[Math.Max(repeats, 1)];
        for (int i = 0; i < ms.Length; i++) ms[i] = Ms(gpu, work);
        Array.Sort(ms);
        return (ms[ms.Length / 2], ms[0]);
    }

    /// <summary>Milliseconds of device time <paramref name="work"/> takes, between two events recorded around it.</summary>
    public static float Ms(CudaBackend gpu, Action work)
    {
        var ctx = gpu.Context;
        ctx.MakeCurrent();
        nint start, stop;
        Driver.Check(Driver.cuEventCreate(&start, Driver.CU_EVENT_DEFAULT), "cuEventCreate");
        Driver.Check(Driver.cuEventCreate(&stop, Driver.CU_EVENT_DEFAULT), "cuEventCreate");
        try
        {
            Driver.Check(Driver.cuEventRecord(start, ctx.Stream), "cuEventRecord");
            work();
            Driver.Check(Driver.cuEventRecord(stop, ctx.Stream), "cuEventRecord");
            Driver.Check(Driver.cuEventSynchronize(stop), "cuEventSynchronize (the timed work failed)");
            float ms;
            Driver.Check(Driver.cuEventElapsedTime(&ms, start, stop), "cuEventElapsedTime");
            return ms;
        }
        finally
        {
            Driver.cuEventDestroy(start);
            Driver.cuEventDestroy(stop);
        }
    }
}
