using Apb.Backends.Cuda.Native;

namespace Apb.Backends.Cuda;

/// <summary>What `apb doctor` and the backend need to know about one GPU.</summary>
public sealed record CudaDeviceInfo(int Ordinal, string Name, int Major, int Minor, int Multiprocessors, long TotalBytes, long L2Bytes, int MaxSharedPerBlock)
{
    public string ComputeCapability => $"{Major}.{Minor}";

    public static unsafe int Count()
    {
        Driver.Initialize();
        int n;
        Driver.Check(Driver.cuDeviceGetCount(&n), "cuDeviceGetCount");
        return n;
    }

    public static unsafe CudaDeviceInfo Query(int ordinal)
    {
        Driver.Initialize();
        int n = Count();
        if (ordinal < 0 || ordinal >= n)
            throw new ApbException($"cuda:{ordinal} does not exist: this machine has {n} CUDA device(s) (0..{n - 1}); check CUDA_VISIBLE_DEVICES");
        int dev;
        Driver.Check(Driver.cuDeviceGet(&dev, ordinal), "cuDeviceGet");
        nuint total;
        Driver.Check(Driver.cuDeviceTotalMem(&total, dev), "cuDeviceTotalMem");
        return new CudaDeviceInfo(ordinal, Driver.DeviceName(dev),
            Driver.Attribute(dev, Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
            Driver.Attribute(dev, Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
            Driver.Attribute(dev, Driver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
            (long)total,
            Driver.Attribute(dev, Driver.CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE),
            Driver.Attribute(dev, Driver.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN));
    }
}

/// <summary>
/// The device's primary context, one stream and the loaded kernel modules. Everything the backend queues goes on this
/// one stream, so ordering between ops is the stream's order and no op needs a host synchronization of its own.
/// </summary>
public sealed unsafe class CudaContext : IDisposable
{
    public CudaDeviceInfo Device { get; }
    public nint Context { get; }
    public nint Stream { get; }
    public string Arch { get; }
    readonly int _dev;
    readonly Dictionary<string, nint> _modules = new();
    // Keyed by (file, kernel) as given: every launch looks its kernel up, so the key is not a concatenated string.
    readonly Dictionary<(string File, string Name), nint> _functions = new();
    [ThreadStatic] static nint t_current;

    public CudaContext(int ordinal)
    {
        Device = CudaDeviceInfo.Query(ordinal);
        Arch = KernelCompiler.Architecture(Device.Major, Device.Minor);
        int dev;
        Driver.Check(Driver.cuDeviceGet(&dev, ordinal), "cuDeviceGet");
        _dev = dev;
        nint ctx;
        Driver.Check(Driver.cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
        Context = ctx;
        MakeCurrent();
        nint s;
        Driver.Check(Driver.cuStreamCreate(&s, Driver.CU_STREAM_NON_BLOCKING), "cuStreamCreate");
        Stream = s;
        ProgrammaticLaunch = Device.Major >= 9 && Driver.cuLaunchKernelEx != null && Environment.GetEnvironmentVariable("APB_PDL") != "0";
        if (Environment.GetEnvironmentVariable("APB_KERNEL_TIMES") == "1") Times = new KernelTimes(s);
    }

    /// <summary>Device time per kernel name when APB_KERNEL_TIMES=1 (see <see cref="KernelTimes"/>), else null.</summary>
    public KernelTimes? Times { get; }

    /// <summary>The driver's current context is per thread: every entry point calls this (a compare when already current).</summary>
    public void MakeCurrent()
    {
        if (t_current == Context) return;
        Driver.Check(Driver.cuCtxSetCurrent(Context), "cuCtxSetCurrent");
        t_current = Context;
    }

    /// <summary>The kernel <paramref name="name"/> from the embedded source <paramref name="file"/>, compiled and loaded on first use.</summary>
    public nint Function(string file, string name)
    {
        var key = (file, name);
        if (_functions.TryGetValue(key, out var f)) return f;
        if (!_modules.TryGetValue(file, out var module))
        {
            var image = KernelCompiler.Compile(file, Arch);
            fixed (byte* p = image)
                Driver.Check(Driver.cuModuleLoadData(&module, p), $"cuModuleLoadData({file}, {Arch})");
            _modules[file] = module;
        }
        var bytes = Driver.Utf8Z(name);
        int rc;
        fixed (byte* n = bytes) rc = Driver.cuModuleGetFunction(&f, module, n);
        if (rc != Driver.CUDA_SUCCESS && KernelCompiler.OverrideMissingKernel(file, name) is { } why) throw new ApbException(why);
        Driver.Check(rc, $"cuModuleGetFunction({file}: {name})");
        _functions[key] = f;
        if (ProgrammaticLaunch && ProgrammaticFiles.Contains(file)) _programmatic.Add(f);
        return f;
    }

    /// <summary>
    /// The kernel files whose every kernel keeps bf16.cuh's programmatic-launch contract (pdl_wait() before touching
    /// anything an earlier kernel may write or read), so that their kernels may be launched to overlap the kernel
    /// before them. ProgrammaticLaunchTests checks each kernel of these files for the call.
    /// </summary>
    public static readonly IReadOnlySet<string> ProgrammaticFiles = new HashSet<string> { "elementwise.cu", "decode.cu", "decode_mma.cu", "gemv.cu" };

    /// <summary>
    /// Whether kernels of <see cref="ProgrammaticFiles"/> are launched with programmatic stream serialization: on by
    /// default on compute capability 9.0 and newer with a driver that has cuLaunchKernelEx; APB_PDL=0 turns it off
    /// (for comparisons: `apb bench decode` with and without).
    /// </summary>
    public bool ProgrammaticLaunch { get; }

    readonly HashSet<nint> _programmatic = [];

    /// <summary>
    /// Queues a kernel: a kernel of <see cref="ProgrammaticFiles"/> with programmatic stream serialization when
    /// <see cref="ProgrammaticLaunch"/> is on (it may start while the kernel before it runs, and waits for it inside),
    /// any other plainly. Launch-configuration errors surface here with the kernel's name; errors inside the kernel
    /// surface at the next synchronization, or right here when APB_CUDA_SYNC=1 (slow; for finding which launch failed).
    /// </summary>
    public void Launch(nint function, string name, (uint X, uint Y, uint Z) grid, uint block, uint sharedBytes, void** args)
    {
        if (grid.X == 0 || grid.Y == 0 || grid.Z == 0) return;
        nint timed = Times?.Begin() ?? 0;
        if (_programmatic.Contains(function))
        {
            var attribute = new LaunchAttribute { Id = LaunchAttribute.ProgrammaticStreamSerialization, Value = 1 };
            var config = new LaunchConfig
            {
                GridX = grid.X, GridY = grid.Y, GridZ = grid.Z, BlockX = block, BlockY = 1, BlockZ = 1,
                SharedBytes = sharedBytes, Stream = Stream, Attributes = &attribute, AttributeCount = 1,
            };
            Driver.Check(Driver.cuLaunchKernelEx(&config, function, args, null), $"cuLaunchKernelEx({name})");
        }
        else Driver.Check(Driver.cuLaunchKernel(function, grid.X, grid.Y, grid.Z, block, 1, 1, sharedBytes, Stream, args, null), $"cuLaunchKernel({name})");
        if (Times != null) Times.End(name, timed);
        if (s_syncEachLaunch) Driver.Check(Driver.cuStreamSynchronize(Stream), $"kernel {name} (APB_CUDA_SYNC=1)");
    }

    static readonly bool s_syncEachLaunch = Environment.GetEnvironmentVariable("APB_CUDA_SYNC") == "1";

    public void Synchronize()
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        Driver.Check(Driver.cuStreamSynchronize(Stream), "cuStreamSynchronize (an earlier kernel or copy failed)");
        _waitTicks += System.Diagnostics.Stopwatch.GetTimestamp() - start;
        Times?.Collect();
    }

    long _waitTicks;

    /// <summary>
    /// Milliseconds the host has spent blocked in <see cref="Synchronize"/> (every download waits there): a step's wall
    /// time less this is the time the host spent queueing it. A step whose host time is close to its wall time is bound
    /// by the host's launches, not by the device (`apb bench decode` reports both).
    /// </summary>
    public double WaitedMs => _waitTicks * 1000.0 / System.Diagnostics.Stopwatch.Frequency;

    public (long Free, long Total) MemoryInfo()
    {
        nuint free, total;
        Driver.Check(Driver.cuMemGetInfo(&free, &total), "cuMemGetInfo");
        return ((long)free, (long)total);
    }

    public void Dispose()
    {
        MakeCurrent();
        Driver.cuStreamSynchronize(Stream);
        Times?.Dispose();
        foreach (var m in _modules.Values) Driver.cuModuleUnload(m);
        _modules.Clear();
        _functions.Clear();
        Driver.cuStreamDestroy(Stream);
        Driver.cuDevicePrimaryCtxRelease(_dev);
        t_current = 0;
    }
}

/// <summary>The whole CUDA picture of this machine, for `apb doctor` and the check report; never throws.</summary>
public sealed class CudaReport
{
    public string? DriverProblem { get; init; }
    public string? DriverPath { get; init; }
    public string? DriverVersion { get; init; }
    public List<(CudaDeviceInfo Info, long FreeBytes)> Devices { get; } = new();
    public string? NvrtcPath { get; init; }
    public string? NvrtcVersion { get; init; }
    public string? NvrtcProblem { get; init; }
    public string? CublasLtPath { get; init; }
    public string? CublasLtVersion { get; init; }
    public string? CublasLtProblem { get; init; }
    public List<string> Problems { get; } = new();

    public bool HasGpu => DriverProblem == null && Devices.Count > 0;

    public static unsafe CudaReport Collect()
    {
        string? driverProblem = Driver.TryInitialize();
        string? driverVersion = null;
        if (driverProblem == null)
        {
            int v;
            if (Driver.cuDriverGetVersion(&v) == Driver.CUDA_SUCCESS) driverVersion = Driver.VersionText(v);
        }
        string? nvrtcProblem = Nvrtc.TryInitialize(), nvrtcVersion = null;
        if (nvrtcProblem == null)
            try { nvrtcVersion = KernelCompiler.NvrtcVersionText(); }
            catch (ApbException e) { nvrtcProblem = e.Message; }
        string? blasProblem = CublasLt.TryInitialize(), blasVersion = null;
        if (blasProblem == null)
            try { blasVersion = CublasLt.VersionText(); }
            catch (ApbException e) { blasProblem = e.Message; }
        var r = new CudaReport
        {
            DriverProblem = driverProblem, DriverPath = Driver.LibraryPath, DriverVersion = driverVersion,
            NvrtcPath = Nvrtc.LibraryPath, NvrtcVersion = nvrtcVersion, NvrtcProblem = nvrtcProblem,
            CublasLtPath = CublasLt.LibraryPath, CublasLtVersion = blasVersion, CublasLtProblem = blasProblem,
        };
        if (driverProblem != null) return r;
        try
        {
            int n = CudaDeviceInfo.Count();
            for (int i = 0; i < n; i++)
            {
                var info = CudaDeviceInfo.Query(i);
                long free = -1;
                try
                {
                    // Free memory needs a context: retain the primary one briefly (it is what the backend would use anyway).
                    int dev; nint ctx; nuint f, t;
                    Driver.Check(Driver.cuDeviceGet(&dev, i), "cuDeviceGet");
                    Driver.Check(Driver.cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
                    Driver.Check(Driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
                    Driver.Check(Driver.cuMemGetInfo(&f, &t), "cuMemGetInfo");
                    free = (long)f;
                    Driver.cuCtxSetCurrent(0);
                    Driver.cuDevicePrimaryCtxRelease(dev);
                }
                catch (ApbException e) { r.Problems.Add($"cuda:{i}: {e.Message}"); }
                r.Devices.Add((info, free));
            }
        }
        catch (ApbException e) { r.Problems.Add(e.Message); }
        return r;
    }
}
