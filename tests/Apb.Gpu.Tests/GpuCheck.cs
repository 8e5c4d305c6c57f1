using System.Runtime.InteropServices;
using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Backends.Cuda;
using Apb.Checkpoints;

namespace Apb.Gpu.Tests;

/// <summary>
/// What one case works with: both backends, a random stream seeded by the case's name (a case gives the same inputs
/// whatever else runs), helpers that put the same bf16-rounded values on both backends, and the comparisons it records.
/// Device tensors are not disposed one by one: the runner returns everything a case allocated to the pool after it.
/// </summary>
public sealed unsafe class GpuCheck : IDisposable
{
    /// <summary>bf16 output rounding is 2^-9 relative: a norm-relative error near 1e-2 is a bug, not rounding.</summary>
    public const double Bf16Tolerance = 1e-2;

    readonly List<nint> _native = [];
    public CudaBackend Gpu { get; }
    public CpuBackend Cpu { get; }
    public Random Rng { get; }
    public List<Measurement> Measurements { get; } = [];

    public GpuCheck(GpuDevices devices, string caseId, int seed)
    {
        Gpu = devices.Gpu; Cpu = devices.Cpu;
        Rng = new Random(seed ^ StableHash(caseId));
    }

    /// <summary>FNV-1a: string.GetHashCode differs between processes, and a case must get the same inputs in each.</summary>
    static int StableHash(string s)
    {
        uint h = 2166136261;
        foreach (char c in s) h = (h ^ c) * 16777619;
        return (int)h;
    }

    // ------------------------------------------------------------------------------------------------ inputs

    /// <summary>Normal values times scale, never exactly zero, rounded to bf16 so both backends start from the same numbers.</summary>
    public float[] Rand(long n, float scale = 1f)
    {
        var a = new float[n];
        for (long i = 0; i < n; i++)
        {
            double u1 = 1.0 - Rng.NextDouble(), u2 = Rng.NextDouble();
            float f = (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2)) * scale;
            if (f == 0) f = 1e-3f;
            a[i] = Bf16(f);
        }
        return a;
    }

    public static float Bf16(float f) => DTypes.BF16ToFloat(DTypes.FloatToBF16(f));

    public Tensor OnCpu(float[] data, int rows, int cols)
    {
        var t = Cpu.Allocate(rows, cols);
        Cpu.Upload(data, t);
        return t;
    }

    public CudaTensor OnGpu(float[] data, int rows, int cols, CudaDType dtype = CudaDType.BF16)
    {
        var t = Gpu.Allocate(rows, cols, dtype);
        Gpu.Upload(data, t);
        return t;
    }

    /// <summary>NaN everywhere: an element no kernel writes stays NaN and fails the comparison.</summary>
    public CudaTensor Poisoned(int rows, int cols, CudaDType dtype = CudaDType.BF16)
    {
        var nan = new float[(long)rows * cols];
        Array.Fill(nan, float.NaN);
        return OnGpu(nan, rows, cols, dtype);
    }

    public static float[] Down(IBackend b, Tensor t)
    {
        var a = new float[(long)t.Rows * t.Cols];
        b.Download(t, a);
        return a;
    }

    /// <summary>A weight in host memory with the given checkpoint dtype, as the memory-mapped file would hold it.</summary>
    public WeightView Weight(string name, float[] data, long[] shape, DType dtype)
    {
        int size = DTypes.Size(dtype);
        nint p = (nint)NativeMemory.Alloc((nuint)(data.Length * (long)size));
        _native.Add(p);
        for (int i = 0; i < data.Length; i++)
        {
            switch (dtype)
            {
                case DType.F32: ((float*)p)[i] = data[i]; break;
                case DType.F16: ((Half*)p)[i] = (Half)data[i]; break;
                default: ((ushort*)p)[i] = DTypes.FloatToBF16(data[i]); break;
            }
        }
        return new WeightView(name, dtype, shape, (byte*)p);
    }

    /// <summary>Runs <paramref name="work"/> with the GPU's attention kernel forced to <paramref name="kernel"/>, then restores it.</summary>
    public void WithKernel(AttentionKernel kernel, Action work)
    {
        var saved = Gpu.AttentionKernel;
        Gpu.AttentionKernel = kernel;
        try { work(); }
        finally { Gpu.AttentionKernel = saved; }
    }

    public void WithDecodeKernel(DecodeKernelVersion version, Action work)
    {
        var saved = Gpu.DecodeKernel;
        Gpu.DecodeKernel = version;
        try { work(); }
        finally { Gpu.DecodeKernel = saved; }
    }

    // ------------------------------------------------------------------------------------------------ comparisons

    /// <summary>sqrt(sum (a - b)^2 / sum b^2): one number for a whole tensor, as llama.cpp's test-backend-ops uses.</summary>
    public static double RelErr(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = (double)a[i] - b[i];
            num += d * d; den += (double)b[i] * b[i];
        }
        return den == 0 ? Math.Sqrt(num) : Math.Sqrt(num / den);
    }

    public void Record(string what, double error, double limit, bool pass, string note = "", string kernel = "") =>
        Measurements.Add(new Measurement(what, kernel, error, limit, pass, note));

    /// <summary>Norm-relative error within the limit, and no NaN (an unwritten element of a poisoned output).</summary>
    public void Compare(string what, float[] got, float[] want, double limit, string kernel = "")
    {
        if (got.Length != want.Length) { Record(what, double.NaN, limit, false, $"{got.Length} elements, expected {want.Length}", kernel); return; }
        int nan = got.Count(float.IsNaN);
        double err = nan > 0 ? double.NaN : RelErr(got, want);
        Record(what, err, limit, nan == 0 && err <= limit, nan > 0 ? $"{nan} of {got.Length} elements NaN (unwritten or overflow)" : "", kernel);
    }

    /// <summary>Log-sum-exps: the -inf pattern must match exactly; finite values by max absolute error.</summary>
    public void CompareLse(string what, float[] got, float[] want, double limit, string kernel = "")
    {
        double err = 0;
        int bad = 0;
        for (int i = 0; i < got.Length; i++)
        {
            if (float.IsNaN(got[i]) || float.IsNegativeInfinity(got[i]) != float.IsNegativeInfinity(want[i])) { bad++; continue; }
            if (!float.IsNegativeInfinity(want[i])) err = Math.Max(err, Math.Abs((double)got[i] - want[i]));
        }
        Record(what, bad > 0 ? double.NaN : err, limit, bad == 0 && err <= limit,
            bad > 0 ? $"{bad} entries NaN or with the wrong -inf pattern" : "max abs error", kernel);
    }

    public void Dispose()
    {
        foreach (var p in _native) NativeMemory.Free((void*)p);
        _native.Clear();
    }
}
