using System.Runtime.InteropServices;
using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Checkpoints;
using Xunit;

namespace Apb.Tests.CpuBackendTests;

/// <summary>The fused residual add + RMSNorm against the two ops it replaces, on the CPU reference.</summary>
public class AddRmsNormTests
{
    static float[] NonZero(Random rng, int n, float scale)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++)
        {
            a[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
            if (a[i] == 0) a[i] = 1e-3f;
        }
        return a;
    }

    static unsafe IWeight NormWeight(CpuBackend b, float[] g, out GCHandle pin)
    {
        // A weight reads its bytes in place (the memory-mapped checkpoint): pin the array for the test's lifetime.
        pin = GCHandle.Alloc(g, GCHandleType.Pinned);
        return b.Load(new WeightView("norm.weight", DType.F32, [g.Length], (byte*)pin.AddrOfPinnedObject()));
    }

    [Theory]
    [InlineData(1, 64)]
    [InlineData(7, 37)]     // not a multiple of any vector width
    [InlineData(33, 1000)]
    [InlineData(3, 4096)]
    public void EqualsAddThenRmsNormBitForBit(int rows, int cols)
    {
        var rng = new Random(rows * 131 + cols);
        var b = new CpuBackend();
        var x = NonZero(rng, rows * cols, 3f); var y = NonZero(rng, rows * cols, 1f); var g = NonZero(rng, cols, 1f);
        var w = NormWeight(b, g, out var pin);
        try
        {
            Tensor Up(float[] a) { var t = b.Allocate(rows, cols); b.Upload(a, t); return t; }
            var x1 = Up(x); var n1 = b.Allocate(rows, cols);
            b.AddInPlace(x1, Up(y));
            b.RmsNorm(x1, w, 1e-5f, n1);

            var x2 = Up(x); var n2 = b.Allocate(rows, cols);
            b.AddRmsNorm(x2, Up(y), w, 1e-5f, n2);

            float[] Down(Tensor t) { var a = new float[rows * cols]; b.Download(t, a); return a; }
            Assert.Equal(Down(x1), Down(x2));   // the residual stream gets the sum
            Assert.Equal(Down(n1), Down(n2));   // and the normed rows are the same floats
            Assert.Contains(Down(n2), f => f != 0);
        }
        finally { pin.Free(); }
    }

    [Fact]
    public void ShapeMismatchIsRefused()
    {
        var b = new CpuBackend();
        var g = new float[8];
        var w = NormWeight(b, g, out var pin);
        try
        {
            var e = Assert.Throws<ArgumentException>(() => b.AddRmsNorm(b.Allocate(2, 8), b.Allocate(3, 8), w, 1e-5f, b.Allocate(2, 8)));
            Assert.Contains("add_rms_norm", e.Message);
        }
        finally { pin.Free(); }
    }
}
