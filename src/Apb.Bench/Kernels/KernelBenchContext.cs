using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Backends.Cuda;
using Apb.Bench.Timing;
using Apb.Checkpoints;

namespace Apb.Bench.Kernels;

/// <summary>
/// What a harness works with: the GPU (for GPU harnesses) and the CPU reference, inputs for the checks (the same
/// bf16-rounded values on both) and for the timings (random values filled on the device), the timers, and the
/// correctness checks it recorded.
/// </summary>
public sealed class KernelBenchContext : IDisposable
{
    readonly CudaBackend? _gpu;
    readonly GpuTimer? _timer;
    readonly Random _rng = new(1);
    readonly List<ushort[]> _hostWeights = [];
    ulong _stream;

    public CpuBackend Cpu { get; } = new();
    public KernelBenchSettings Settings { get; }
    public TextWriter Log { get; }
    public List<KernelCheck> Checks { get; } = [];

    KernelBenchContext(KernelBenchSettings settings, TextWriter log, CudaBackend? gpu)
    {
        Settings = settings; Log = log; _gpu = gpu;
        if (gpu != null) _timer = new GpuTimer(gpu);
    }

    /// <summary>A context for <paramref name="harness"/>: with a GPU when it needs one, or a clear error where there is none.</summary>
    public static KernelBenchContext Open(KernelHarness harness, KernelBenchSettings settings, TextWriter log)
    {
        if (!harness.NeedsGpu) return new KernelBenchContext(settings, log, null);
        CudaBackend gpu;
        try
        {
            gpu = new CudaBackend(settings.Device);
        }
        catch (ApbException e)
        {
            throw new ApbException($"bench kernel {harness.Name} times a CUDA kernel and needs an NVIDIA GPU, but cuda:{settings.Device} " +
                                   $"cannot be used: {e.Message.Split('\n')[0]} (`apb doctor` says why; `apb bench kernel cpu-attention` and `cpu-matmul` run on the CPU)");
        }
        return new KernelBenchContext(settings, log, gpu);
    }

    public CudaBackend Gpu => _gpu ?? throw new InvalidOperationException("this harness was opened without a GPU");

    public string DeviceName => _gpu != null ? $"{_gpu.Context.Device.Name} ({_gpu.Context.Arch})" : $"cpu ({Environment.ProcessorCount} threads)";

    // ------------------------------------------------------------------------------------------------ timing

    /// <summary>
    /// Device time of <paramref name="work"/>: one warm-up call and more until <see cref="KernelBenchSettings.WarmupMs"/>
    /// of device time has run, then the median of the repeats (CUDA events).
    /// </summary>
    public TimingStats TimeGpu(Action work, int defaultRepeats) => _timer!.Measure(work, Settings.Repeats ?? defaultRepeats, warmupMs: Settings.WarmupMs);

    /// <summary>Wall time of host work: one warm-up call, then the median of the repeats (Stopwatch).</summary>
    public TimingStats TimeCpu(Action work, int defaultRepeats) => TimingStats.Stopwatch(work, Settings.Repeats ?? defaultRepeats);

    /// <summary>Runs <paramref name="work"/> with the GPU's attention kernel set to <paramref name="kernel"/>, then restores it.</summary>
    public void WithKernel(AttentionKernel kernel, Action work)
    {
        var saved = Gpu.AttentionKernel;
        Gpu.AttentionKernel = kernel;
        try { work(); }
        finally { Gpu.AttentionKernel = saved; }
    }

    // ------------------------------------------------------------------------------------------------ inputs

    /// <summary>A bf16 device tensor of U(-scale, scale) values made on the device (timing inputs: no host buffer).</summary>
    public CudaTensor DeviceRandom(int rows, int cols, float scale = 1f)
    {
        var t = Gpu.Allocate(rows, cols, CudaDType.BF16);
        RandomFill.Fill(t, 7, ++_stream, scale);
        return t;
    }

    /// <summary>Host values U(-scale, scale), rounded to bf16 so that both backends see the same numbers.</summary>
    public float[] HostValues(long n, float scale = 1f)
    {
        var a = new float[n];
        for (long i = 0; i < n; i++) a[i] = DTypes.BF16ToFloat(DTypes.FloatToBF16((float)(_rng.NextDouble() * 2 - 1) * scale));
        return a;
    }

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

    /// <summary>A bf16 weight of these values on both backends (the host copy stays pinned while the context lives: the CPU reads it in place).</summary>
    public (IWeight Cpu, IWeight Gpu) Weight(string name, float[] data, int rows, int cols)
    {
        var view = HostBf16(name, data, rows, cols);
        return (Cpu.Load(view), Gpu.Load(view));
    }

    /// <summary>A bf16 weight of these values on the CPU backend only (pinned while the context lives: read in place).</summary>
    public IWeight CpuWeight(string name, float[] data, int rows, int cols) => Cpu.Load(HostBf16(name, data, rows, cols));

    /// <summary>The values as a pinned bf16 host array kept by the context, and a view of it as a checkpoint tensor.</summary>
    unsafe WeightView HostBf16(string name, float[] data, int rows, int cols)
    {
        var bits = GC.AllocateUninitializedArray<ushort>(data.Length, pinned: true);
        for (int i = 0; i < bits.Length; i++) bits[i] = DTypes.FloatToBF16(data[i]);
        _hostWeights.Add(bits);
        fixed (ushort* p = bits) // pinned: the pointer stays valid after the fixed block
            return new WeightView(name, DType.BF16, rows == 1 ? [cols] : [rows, cols], (byte*)p);
    }

    public static float[] Down(IBackend b, Tensor t)
    {
        var a = new float[(long)t.Rows * t.Cols];
        b.Download(t, a);
        return a;
    }

    // ------------------------------------------------------------------------------------------------ checks

    /// <summary>
    /// Records the norm-relative error of <paramref name="got"/> against the reference and prints it; over the limit (or
    /// NaN) it stops the harness with an error: a kernel that computes the wrong thing has no time worth reporting.
    /// </summary>
    public void Expect(string what, ReadOnlySpan<float> got, ReadOnlySpan<float> want, double limit)
    {
        double num = 0, den = 0;
        for (int i = 0; i < got.Length; i++)
        {
            double d = (double)got[i] - want[i];
            num += d * d; den += (double)want[i] * want[i];
        }
        double err = got.Length != want.Length ? double.NaN : den == 0 ? Math.Sqrt(num) : Math.Sqrt(num / den);
        var check = new KernelCheck(what, err, limit);
        Checks.Add(check);
        Log.WriteLine($"  check {what}: error {Markdown.Sci(err, 2)} (limit {Markdown.Sci(limit, 0)}) {(check.Pass ? "ok" : "FAILED")}");
        if (!check.Pass)
            throw new ApbException($"bench kernel {Settings.Name}: the correctness check before timing failed: {what}: relative error {Markdown.Sci(err)} " +
                                   $"against the CPU reference, limit {Markdown.Sci(limit, 1)}. The kernel is wrong; the GPU tests (tests/Apb.Gpu.Tests) show where.");
    }

    public void Dispose()
    {
        _timer?.Dispose();
        _gpu?.Dispose();
    }
}
