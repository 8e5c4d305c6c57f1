using Apb.Backends.Cpu;
using Apb.Backends.Cuda;
using Apb.Backends.Cuda.Native;

namespace Apb.Gpu.Tests;

/// <summary>
/// The two backends every case compares: one CudaBackend (the GPU under test) and the fp32 CpuBackend (the reference),
/// made once and shared by all cases (NVRTC compiles each kernel file once per process).
/// </summary>
public sealed class GpuDevices : IDisposable
{
    public CudaBackend Gpu { get; }
    public CpuBackend Cpu { get; } = new();

    public GpuDevices(int ordinal = 0) { Gpu = new CudaBackend(ordinal); }

    /// <summary>
    /// Null when a CUDA GPU can be used, else why not (first line: the loader's full trace is `apb doctor`'s job). The same
    /// probe as tests/Apb.Tests' GpuFactAttribute; it never throws.
    /// </summary>
    public static string? Probe()
    {
        if (Driver.TryInitialize() is { } problem) return "no CUDA GPU: " + problem.Split('\n')[0];
        try
        {
            return CudaDeviceInfo.Count() == 0 ? "no CUDA GPU: the driver sees no device" : null;
        }
        catch (ApbException e)
        {
            return "no usable CUDA GPU: " + e.Message;
        }
    }

    public void Dispose() => Gpu.Dispose();
}
