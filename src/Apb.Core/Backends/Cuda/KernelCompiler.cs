using System.Reflection;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Apb.Backends.Cuda.Native;

namespace Apb.Backends.Cuda;

/// <summary>
/// Compiles the embedded .cu sources with NVRTC for one device architecture and caches the cubins on disk
/// (APB_KERNEL_CACHE, else ~/.cache/apb/kernels). The cache key hashes everything that changes the output: source text,
/// the embedded headers, options, architecture and NVRTC version; a cached file is only ever a pure function of its key, so a stale or
/// foreign cache can never be picked up (correctness state stays out of the cache).
/// </summary>
public static unsafe class KernelCompiler
{
    /// <summary>Kernels are written for sm_80 and newer (bf16 mma.sync); Hopper gets sm_90a, which the wgmma + TMA attention kernel needs.</summary>
    public static string Architecture(int major, int minor)
    {
        if (major < 8)
            throw new ApbException($"compute capability {major}.{minor} is too old: the CUDA backend needs 8.0 or newer (bf16 tensor cores: A100, H100/H200, L40, RTX 30xx/40xx)");
        return major == 9 && minor == 0 ? "sm_90a" : $"sm_{major}{minor}";
    }

    public static string CacheFolder()
    {
        if (Environment.GetEnvironmentVariable("APB_KERNEL_CACHE") is { Length: > 0 } d) return d;
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        if (string.IsNullOrEmpty(home)) home = Path.GetTempPath();
        return Path.Combine(home, ".cache", "apb", "kernels");
    }

    /// <summary>
    /// Hex SHA-256 of (source, headers, options, arch, NVRTC version), each length-prefixed so no two inputs collide by
    /// concatenation. The headers are part of what is compiled: a change to bf16.cuh must miss every cached cubin.
    /// </summary>
    public static string CacheKey(string source, IReadOnlyList<(string Name, string Text)> headers, IReadOnlyList<string> options, string arch, string nvrtcVersion)
    {
        var sb = new StringBuilder();
        void Part(string s) => sb.Append(s.Length).Append(':').Append(s).Append('\n');
        Part("apb-kernel-cache-v2");
        Part(source);
        Part(headers.Count.ToString());
        foreach (var (name, text) in headers) { Part(name); Part(text); }
        Part(options.Count.ToString());
        foreach (var o in options) Part(o);
        Part(arch);
        Part(nvrtcVersion);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }

    /// <summary>
    /// The folder named by APB_KERNEL_SOURCES, or null. Kernel experiments without a rebuild: a kernel file or header
    /// found there is compiled instead of the embedded one (the repository's Kernels folder after an edit on the GPU
    /// machine, or an older version of one file timed beside the current one in the same call). Its text is hashed into
    /// the cache key like the embedded text, so a cubin is never reused across versions.
    /// </summary>
    public static string? SourceOverrideFolder()
    {
        if (Environment.GetEnvironmentVariable("APB_KERNEL_SOURCES") is not { Length: > 0 } dir) return null;
        if (!Directory.Exists(dir))
            throw new ApbException($"APB_KERNEL_SOURCES={dir} is not a folder: name the folder that holds the .cu/.cuh files to compile instead of the embedded ones, or unset it");
        return dir;
    }

    /// <summary>
    /// Why kernel <paramref name="name"/> is missing from <paramref name="file"/>'s module when that file was compiled
    /// from APB_KERNEL_SOURCES (null when it was not): a text from another commit than the binary's host code, which
    /// launches kernels that text may not have (session 23 met it as a bare CUDA_ERROR_NOT_FOUND from an older
    /// attention_hopper.cu without the QK8 chunk kernel). Entry names are often made by macros, so the text is not
    /// searched for the name: the failed lookup is the evidence.
    /// </summary>
    public static string? OverrideMissingKernel(string file, string name) => OverrideMissingKernel(file, name, SourceOverrideFolder());

    internal static string? OverrideMissingKernel(string file, string name, string? overrideFolder)
    {
        if (overrideFolder == null) return null;
        string path = Path.Combine(overrideFolder, file);
        if (!File.Exists(path)) return null;
        return $"kernel {name} is not in the module compiled from {path}, the text APB_KERNEL_SOURCES={overrideFolder} put in place of the embedded " +
               $"{file}: this binary's host code launches it, so that text is from an older (or other) commit than the binary. " +
               "Time that text only on calls that do not need the kernel, add it there, or unset APB_KERNEL_SOURCES";
    }

    /// <summary>The text of a kernel source, e.g. "attention.cu": embedded, or from <see cref="SourceOverrideFolder"/> when it is there.</summary>
    public static string Source(string file) => Source(file, SourceOverrideFolder());

    internal static string Source(string file, string? overrideFolder)
    {
        if (overrideFolder != null && File.Exists(Path.Combine(overrideFolder, file)))
        {
            Log.Add($"{file}: from {Path.Combine(overrideFolder, file)} (APB_KERNEL_SOURCES), not the embedded text");
            return File.ReadAllText(Path.Combine(overrideFolder, file));
        }
        return Embedded(file);
    }

    static string Embedded(string file)
    {
        var asm = typeof(KernelCompiler).Assembly;
        string? name = asm.GetManifestResourceNames().FirstOrDefault(n => n.EndsWith("." + file, StringComparison.Ordinal));
        if (name == null) throw new InvalidOperationException($"kernel source {file} is not embedded in {asm.GetName().Name}");
        using var s = asm.GetManifestResourceStream(name)!;
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    /// <summary>
    /// The embedded headers (Kernels/*.cuh, e.g. bf16.cuh) as (include name, text): handed to NVRTC with every program,
    /// so a kernel file's `#include "bf16.cuh"` resolves without a file system, and hashed into every cache key. With
    /// APB_KERNEL_SOURCES, a header there replaces the embedded one of its name or joins them.
    /// </summary>
    public static IReadOnlyList<(string Name, string Text)> Headers() => s_headers.Value;

    static readonly Lazy<(string Name, string Text)[]> s_headers = new(() => Headers(SourceOverrideFolder()));

    internal static (string Name, string Text)[] Headers(string? overrideFolder)
    {
        var asm = typeof(KernelCompiler).Assembly;
        // Resource names are namespace-dotted ("Apb.Core.Cuda.Kernels.bf16.cuh"): the include name is the file name.
        var names = asm.GetManifestResourceNames().Where(n => n.EndsWith(".cuh", StringComparison.Ordinal))
            .Select(n => n[(n.LastIndexOf('.', n.Length - 5) + 1)..]);
        // A header new in the override folder is offered too, so an edited kernel may include it.
        if (overrideFolder != null)
            names = names.Concat(Directory.EnumerateFiles(overrideFolder, "*.cuh").Select(f => Path.GetFileName(f)));
        return names.Distinct().Order(StringComparer.Ordinal).Select(file => (file, Source(file, overrideFolder))).ToArray();
    }

    /// <summary>--include-path for the CUDA headers: our kernels need none, but later ones (cuda_bf16.h, cuda/pipeline) will.</summary>
    public static string? IncludePath()
    {
        foreach (var v in new[] { "CUDA_HOME", "CUDA_PATH" })
            if (Environment.GetEnvironmentVariable(v) is { Length: > 0 } root && Directory.Exists(Path.Combine(root, "include")))
                return Path.Combine(root, "include");
        return Directory.Exists("/usr/local/cuda/include") ? "/usr/local/cuda/include" : null;
    }

    public static List<string> Options(string arch)
    {
        var o = new List<string> { $"--gpu-architecture={arch}", "--std=c++17", "-default-device", "-lineinfo" };
        if (IncludePath() is { } inc) o.Add($"--include-path={inc}");
        // Kernel experiments without a rebuild: APB_KERNEL_DEFINES="NAME=1,OTHER=0" adds -D options (part of the cache key);
        // a knob must be an #ifndef-guarded macro in the kernel (bench/gpu/attention_variants.sh times such variants).
        foreach (var d in (Environment.GetEnvironmentVariable("APB_KERNEL_DEFINES") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            o.Add($"-D{d}");
        return o;
    }

    /// <summary>
    /// Whether this NVRTC compiles for <paramref name="arch"/> itself: sm_90a needs CUDA 12.0 or newer. An older NVRTC makes
    /// <see cref="Compile"/> fall back to compute_80 PTX, which the Hopper-only kernels cannot be.
    /// </summary>
    public static bool CompilesFor(string arch)
    {
        Nvrtc.Initialize();
        return arch != "sm_90a" || Nvrtc.Version().Major >= 12;
    }

    public static string NvrtcVersionText()
    {
        var (maj, min) = Nvrtc.Version();
        return $"{maj}.{min}";
    }

    /// <summary>What the last <see cref="Compile"/> did, for `apb doctor` and the check report.</summary>
    public static List<string> Log { get; } = new();

    /// <summary>
    /// How many kernel files this process compiled with NVRTC (cache misses). A run that changed it spent seconds in the
    /// compiler inside whatever phase first used a kernel: `apb bench prefill` runs its profile again then.
    /// </summary>
    public static int Compilations => s_compilations;
    static int s_compilations;

    /// <summary>
    /// A loadable image (cubin, or PTX when NVRTC cannot target the device's architecture directly and the driver must
    /// JIT it) for <paramref name="file"/>, from the cache or freshly compiled.
    /// </summary>
    public static byte[] Compile(string file, string arch)
    {
        Nvrtc.Initialize();
        string source = Source(file);
        string version = NvrtcVersionText();
        var options = Options(arch);
        string key = CacheKey(source, Headers(), options, arch, version);
        string dir = CacheFolder();
        string path = Path.Combine(dir, $"{Path.GetFileNameWithoutExtension(file)}-{arch}-{key[..16]}.cubin");
        if (File.Exists(path))
        {
            Log.Add($"{file}: cached {path}");
            return File.ReadAllBytes(path);
        }
        var sw = System.Diagnostics.Stopwatch.StartNew();
        byte[] image;
        try
        {
            image = Run(file, source, options, cubin: true);
        }
        catch (CudaException e) when (e.Message.StartsWith(InvalidOption, StringComparison.Ordinal))
        {
            // An NVRTC older than the device: compile PTX for the newest architecture our kernels need and let the driver JIT.
            var ptxOptions = Options("compute_80");
            Log.Add($"{file}: NVRTC {version} cannot target {arch} ({e.Message}); falling back to compute_80 PTX");
            image = Run(file, source, ptxOptions, cubin: false);
        }
        Log.Add($"{file}: compiled for {arch} by NVRTC {version} in {sw.ElapsedMilliseconds} ms");
        Interlocked.Increment(ref s_compilations);
        try
        {
            Directory.CreateDirectory(dir);
            string tmp = path + "." + Environment.ProcessId + ".tmp";
            File.WriteAllBytes(tmp, image);
            File.Move(tmp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.Add($"{file}: kernel cache {dir} not writable ({e.Message}); compiling again next time");
        }
        return image;
    }

    const string InvalidOption = "NVRTC_ERROR_INVALID_OPTION";

    static byte[] Run(string file, string source, List<string> options, bool cubin)
    {
        nint prog;
        var src = Driver.Utf8Z(source);
        var name = Driver.Utf8Z(file);
        var headers = Headers();
        using (var texts = new PinnedStrings(headers.Select(h => h.Text)))
        using (var names = new PinnedStrings(headers.Select(h => h.Name)))
        {
            fixed (byte* s = src, n = name)
                Nvrtc.Check(Nvrtc.nvrtcCreateProgram(&prog, s, n, texts.Count, texts.Pointers, names.Pointers), "nvrtcCreateProgram");
        }
        try
        {
            int rc;
            using (var opts = new PinnedStrings(options))
                rc = Nvrtc.nvrtcCompileProgram(prog, opts.Count, opts.Pointers);
            if (rc != 0)
            {
                string log = ProgramLog(prog);
                if (rc == 5) throw new CudaException($"{InvalidOption}: {string.Join(' ', options)}\n{log}");
                throw new CudaException($"NVRTC could not compile {file} ({string.Join(' ', options)}): nvrtcResult {rc}\n{log}");
            }
            nuint size;
            if (cubin)
            {
                Nvrtc.Check(Nvrtc.nvrtcGetCUBINSize(prog, &size), "nvrtcGetCUBINSize");
                var image = new byte[size];
                fixed (byte* p = image) Nvrtc.Check(Nvrtc.nvrtcGetCUBIN(prog, p), "nvrtcGetCUBIN");
                return image;
            }
            Nvrtc.Check(Nvrtc.nvrtcGetPTXSize(prog, &size), "nvrtcGetPTXSize");
            var ptx = new byte[size];
            fixed (byte* p = ptx) Nvrtc.Check(Nvrtc.nvrtcGetPTX(prog, p), "nvrtcGetPTX");
            return ptx;
        }
        finally
        {
            Nvrtc.nvrtcDestroyProgram(&prog);
        }
    }

    static string ProgramLog(nint prog)
    {
        nuint size;
        if (Nvrtc.nvrtcGetProgramLogSize(prog, &size) != 0 || size <= 1) return "(no log)";
        var buf = new byte[size];
        fixed (byte* p = buf) Nvrtc.nvrtcGetProgramLog(prog, p);
        return Encoding.UTF8.GetString(buf, 0, (int)size - 1);
    }
}

/// <summary>UTF-8, zero-terminated copies of strings, pinned for a native call (an array of char* there) until disposed.</summary>
sealed unsafe class PinnedStrings : IDisposable
{
    readonly GCHandle[] _handles;
    readonly byte*[] _pointers;
    GCHandle _array;

    public PinnedStrings(IEnumerable<string> items)
    {
        _handles = items.Select(x => GCHandle.Alloc(Driver.Utf8Z(x), GCHandleType.Pinned)).ToArray();
        _pointers = new byte*[Math.Max(1, _handles.Length)];
        for (int i = 0; i < _handles.Length; i++) _pointers[i] = (byte*)_handles[i].AddrOfPinnedObject();
        _array = GCHandle.Alloc(_pointers, GCHandleType.Pinned);
    }

    public int Count => _handles.Length;
    public byte** Pointers => (byte**)_array.AddrOfPinnedObject();

    public void Dispose()
    {
        if (_array.IsAllocated) _array.Free();
        foreach (var h in _handles) h.Free();
    }
}
