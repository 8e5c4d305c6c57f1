using System.CommandLine;
using Apb.Backends.Cuda;
using Apb.Backends.Cuda.Native;

namespace Apb.Cli.Commands;

/// <summary>
/// `apb doctor`: what this machine offers the CUDA backend (GPUs, driver, NVRTC, cuBLASLt, where each library was found)
/// and, with a GPU, whether our kernels compile for it. A machine without a GPU is a normal answer, not an error: it
/// says so, prints the load trace, and exits 0.
/// </summary>
static class DoctorCommand
{
    public static Command Create(Io io)
    {
        var compile = new Option<bool>("--no-compile") { Description = "skip compiling the kernels for each GPU" };
        var cmd = new Command("doctor", "report GPUs, CUDA driver / NVRTC / cuBLASLt versions and library paths") { compile };
        cmd.SetAction(r => Cli.Guard(io, () => Run(io, !r.GetValue(compile))));
        return cmd;
    }

    static string Gib(long b) => b < 0 ? "?" : $"{b / (double)(1L << 30):F1} GiB";

    public static int Run(Io io, bool compileKernels)
    {
        var o = io.Out;
        var r = CudaReport.Collect();
        o.WriteLine("apb doctor");
        o.WriteLine($"  cpu backend        : ok ({Environment.ProcessorCount} cores)");
        if (r.DriverProblem != null)
        {
            o.WriteLine("  cuda               : no GPU available: " + r.DriverProblem.Split('\n')[0]);
            o.WriteLine("  (--device cpu works; the CUDA backend needs an NVIDIA GPU and its driver)");
            o.WriteLine("load trace:");
            foreach (var line in r.DriverProblem.Split('\n').Skip(1)) o.WriteLine(line);
            return 0;
        }
        o.WriteLine($"  driver             : {r.DriverPath}, CUDA {r.DriverVersion}");
        o.WriteLine($"  nvrtc              : {(r.NvrtcProblem == null ? $"{r.NvrtcPath}, {r.NvrtcVersion}" : "MISSING: " + r.NvrtcProblem.Split('\n')[0])}");
        o.WriteLine($"  cublasLt           : {(r.CublasLtProblem == null ? $"{r.CublasLtPath}, {r.CublasLtVersion}" : "MISSING: " + r.CublasLtProblem.Split('\n')[0])}");
        o.WriteLine($"  nccl               : {Nccl()}");
        o.WriteLine($"  cuda headers       : {KernelCompiler.IncludePath() ?? "not found (our kernels need none)"}");
        o.WriteLine($"  kernel cache       : {KernelCompiler.CacheFolder()}");
        if (r.Devices.Count == 0) o.WriteLine("  gpus               : none visible (the driver loaded; check CUDA_VISIBLE_DEVICES)");
        foreach (var (d, free) in r.Devices)
            o.WriteLine($"  cuda:{d.Ordinal,-14}: {d.Name}, compute {d.ComputeCapability}, {d.Multiprocessors} SMs, " +
                        $"{Gib(d.TotalBytes)} total / {Gib(free)} free, L2 {d.L2Bytes >> 20} MiB, smem/block {d.MaxSharedPerBlock >> 10} KiB");
        foreach (var p in r.Problems) o.WriteLine("  problem: " + p);
        foreach (var p in new[] { r.NvrtcProblem, r.CublasLtProblem })
            if (p != null)
            {
                o.WriteLine("load trace:");
                foreach (var line in p.Split('\n').Skip(1)) o.WriteLine(line);
            }
        if (r.NvrtcProblem != null) return 0;
        foreach (var (d, _) in r.Devices)
        {
            // Which prefill attention the GPU gets, and so whether --prefill-attention fp8 can run there (it refuses
            // otherwise and points here); then, unless --no-compile, whether our kernels compile for it.
            string arch;
            try { arch = KernelCompiler.Architecture(d.Major, d.Minor); }
            catch (ApbException e)
            {
                o.WriteLine($"  attention cuda:{d.Ordinal,-4}: {e.Message}");
                if (!compileKernels) continue;
                o.WriteLine($"  kernels cuda:{d.Ordinal,-6}: FAILED: {e.Message}");
                return 1;
            }
            string? hopper = CudaBackend.HopperAttentionProblem(arch);
            o.WriteLine($"  attention cuda:{d.Ordinal,-4}: " + (hopper is null
                ? "the Hopper kernel (wgmma + TMA); --prefill-attention fp8 available"
                : $"the mma.sync kernels ({hopper}); --prefill-attention fp8 needs the Hopper kernel, so it is refused here"));
            if (!compileKernels) continue;
            try
            {
                foreach (var f in hopper is null ? new[] { "elementwise.cu", "attention.cu", "attention_hopper.cu" } : new[] { "elementwise.cu", "attention.cu" })
                {
                    var sw = System.Diagnostics.Stopwatch.StartNew();
                    var image = KernelCompiler.Compile(f, arch);
                    o.WriteLine($"  kernels cuda:{d.Ordinal,-6}: {f} for {arch}: {image.Length / 1024} KiB in {sw.ElapsedMilliseconds} ms");
                }
            }
            catch (ApbException e)
            {
                o.WriteLine($"  kernels cuda:{d.Ordinal,-6}: FAILED: {e.Message}");
                return 1;
            }
        }
        return 0;
    }

    // NCCL is needed only for `apb launch` (one process per GPU); its absence is reported, not an error.
    static string Nccl()
    {
        if (Backends.Cuda.Native.Nccl.TryInitialize() is { } why)
            return "not found (needed only for apb launch across GPUs): " + why.Split('\n')[0];
        int v = Backends.Cuda.Native.Nccl.Version;
        return $"{Backends.Cuda.Native.Nccl.LibraryPath}, {v / 10000}.{v / 100 % 100}.{v % 100}";
    }
}
