using Xunit;

namespace Apb.Gpu.Tests.Xunit;

/// <summary>A theory that needs a CUDA GPU: skipped, with the reason, where none is found (CI has no GPU).</summary>
public sealed class GpuTheoryAttribute : TheoryAttribute
{
    static readonly Lazy<string?> s_why = new(GpuDevices.Probe);

    public GpuTheoryAttribute()
    {
        if (s_why.Value is { } why) Skip = why;
    }
}
