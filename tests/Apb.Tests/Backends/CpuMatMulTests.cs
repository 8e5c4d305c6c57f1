using System.Runtime.InteropServices;
using Apb.Backends.Cpu;
using Apb.Checkpoints;
using Xunit;

namespace Apb.Tests.CpuBackendTests;

/// <summary>
/// The CPU matmul (x W^T + bias) against a float64 loop over the same fp32 values: both forms (dot products for a few
/// tokens, packed panels from <see cref="CpuMatMul.PackedMinRows"/>), every vector width, the weight types a checkpoint
/// has, and shapes that leave partial micro-tiles, panels and token chunks.
/// </summary>
public sealed unsafe class CpuMatMulTests
{
    /// <summary>A weight of <paramref name="dtype"/> from fp32 values (which must be representable in it), pinned for the test.</summary>
    sealed class TestWeight : IDisposable
    {
        readonly GCHandle _pin;
        public CpuWeight Weight { get; }

        public TestWeight(string name, DType dtype, float[] values, int rows, int cols)
        {
            byte[] bytes = new byte[values.Length * DTypes.Size(dtype)];
            for (int i = 0; i < values.Length; i++)
                switch (dtype)
                {
                    case DType.F32: BitConverter.TryWriteBytes(bytes.AsSpan(i * 4), values[i]); break;
                    case DType.BF16: BitConverter.TryWriteBytes(bytes.AsSpan(i * 2), DTypes.FloatToBF16(values[i])); break;
                    case DType.F16: BitConverter.TryWriteBytes(bytes.AsSpan(i * 2), (Half)values[i]); break;
                    default: throw new ArgumentOutOfRangeException(nameof(dtype));
                }
            _pin = GCHandle.Alloc(bytes, GCHandleType.Pinned);
            long[] shape = rows == 1 ? [cols] : [rows, cols];
            Weight = new CpuWeight(new WeightView(name, dtype, shape, (byte*)_pin.AddrOfPinnedObject()));
        }

        public void Dispose() => _pin.Free();
    }

    /// <summary>Values exact in bf16 and f16 (a few significant bits, small exponents), so every dtype holds the same numbers.</summary>
    static float[] Values(int n, Random rng)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (rng.Next(-64, 65)) / 64f;
        return v;
    }

    [Theory]
    [InlineData(1, 64, 96)]      // decode: dot form
    [InlineData(7, 100, 70)]     // dot form, odd K and N
    [InlineData(8, 64, 128)]     // the first packed size: one micro-tile of 6 rows and one of 2
    [InlineData(13, 384, 1024)]  // the embedded model's gate/up shape
    [InlineData(50, 1024, 384)]  // down
    [InlineData(200, 384, 640)]  // q/k/v in one, a token chunk and a part of the next
    [InlineData(31, 37, 33)]     // a last panel of one feature, K that fits no vector
    [InlineData(600, 384, 1024)] // several token chunks and panels: the packed path at scale
    public void MatchesAFloat64Loop(int T, int K, int N)
    {
        var rng = new Random(T * 1_000_003 + K * 1009 + N);
        float[] x = Values(T * K, rng), w = Values(N * K, rng), b = Values(N, rng);
        var expected = new double[T * N];
        for (int t = 0; t < T; t++)
            for (int n = 0; n < N; n++)
            {
                double s = b[n];
                for (int k = 0; k < K; k++) s += (double)x[t * K + k] * w[n * K + k];
                expected[t * N + n] = s;
            }
        foreach (var dtype in new[] { DType.BF16, DType.F16, DType.F32 })
            foreach (int bits in new[] { 512, 256, 128 })
            {
                using var weight = new TestWeight("w", dtype, w, N, K);
                using var bias = new TestWeight("b", dtype, b, 1, N);
                var output = new CpuTensor(T, N);
                output.Span.Fill(float.NaN); // every output must be written
                CpuMatMul.Run(new CpuTensor(x, 0, T, K), weight.Weight, bias.Weight, output, bits);
                for (int i = 0; i < T * N; i++)
                {
                    // fp32 accumulation of K products of magnitude <= 1: the error bound grows with K.
                    double tol = 1e-6 * K + 1e-6 * Math.Abs(expected[i]);
                    Assert.True(Math.Abs(output.Span[i] - expected[i]) <= tol,
                        $"T={T} K={K} N={N} {dtype} {bits}-bit: out[{i / N}, {i % N}] = {output.Span[i]}, expected {expected[i]}");
                }
            }
    }

    [Fact]
    public void AnOutputViewInsideALargerTensorIsWrittenOnlyInItsRows()
    {
        // The model writes linears into row slices of its scratch tensors: rows outside the view must stay as they were.
        const int T = 20, K = 64, N = 96;
        var rng = new Random(5);
        float[] x = Values(T * K, rng), w = Values(N * K, rng);
        using var weight = new TestWeight("w", DType.BF16, w, N, K);
        var whole = new CpuTensor(T + 4, N);
        whole.Span.Fill(7f);
        var view = (CpuTensor)whole.RowSlice(2, T);
        CpuMatMul.Run(new CpuTensor(x, 0, T, K), weight.Weight, null, view, 512);
        Assert.All(whole.Row(0).ToArray().Concat(whole.Row(1).ToArray()).Concat(whole.Row(T + 2).ToArray()).Concat(whole.Row(T + 3).ToArray()),
            v => Assert.Equal(7f, v));
        double s = 0;
        for (int k = 0; k < K; k++) s += (double)x[(T - 1) * K + k] * w[(N - 1) * K + k];
        Assert.Equal(s, view.Row(T - 1)[N - 1], 1e-4);
    }
}
