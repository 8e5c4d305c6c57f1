using Apb.Backends.Cuda;
using Apb.Backends.Cuda.Native;
using Xunit;

namespace Apb.Tests.Cuda;

/// <summary>
/// A fact that needs a CUDA GPU: skipped, with the reason, where no driver or no device is found (CI has no GPU).
/// The probe never throws: it is the same one `apb doctor` uses.
/// </summary>
public sealed class GpuFactAttribute : FactAttribute
{
    static readonly Lazy<string?> s_why = new(Probe);

    public GpuFactAttribute()
    {
        if (s_why.Value is { } why) Skip = why;
    }

    /// <summary>Null when a GPU can be used, else why not (first line only: the trace belongs in `apb doctor`).</summary>
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
}
