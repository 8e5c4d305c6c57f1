using System.Runtime.InteropServices;

namespace Apb.Backends.Cuda.Native;

/// <summary>
/// Finds NVIDIA's shared libraries and records every path tried and why it failed. "Which .so did it load, and why
/// not" is the first question when a GPU machine misbehaves, so the trace is printed whenever something is missing.
/// Folders are tried in a fixed order (APB_CUDA_LIB_DIR, CUDA_HOME/CUDA_PATH, the usual install folders), each with
/// the versioned sonames newest first; the loader's default search (ldconfig, LD_LIBRARY_PATH) comes last.
/// </summary>
public sealed class NativeResolver
{
    readonly List<string> _trace = new();

    public IReadOnlyList<string> Trace => _trace;

    /// <summary>The folders searched, in order; the environment is read through <paramref name="env"/> so tests can fake it.</summary>
    public static IReadOnlyList<string> SearchFolders(Func<string, string?> env)
    {
        var dirs = new List<string>();
        void Add(string? d)
        {
            if (!string.IsNullOrEmpty(d) && !dirs.Contains(d)) dirs.Add(d);
        }
        if (env("APB_CUDA_LIB_DIR") is { Length: > 0 } custom)
            foreach (var d in custom.Split(':', StringSplitOptions.RemoveEmptyEntries)) Add(d);
        foreach (var v in new[] { "CUDA_HOME", "CUDA_PATH" })
            if (env(v) is { Length: > 0 } root)
            {
                Add(Path.Combine(root, "lib64"));
                Add(Path.Combine(root, "lib"));
            }
        Add("/usr/local/cuda/lib64");
        Add("/usr/local/nvidia/lib64");
        Add("/usr/lib/x86_64-linux-gnu");
        Add("/usr/lib64");
        return dirs;
    }

    readonly IReadOnlyList<string> _folders;

    public NativeResolver(Func<string, string?>? env = null)
    {
        _folders = SearchFolders(env ?? Environment.GetEnvironmentVariable);
    }

    /// <summary>
    /// Loads the first of <paramref name="sonames"/> found, folder by folder, then through the loader's default search.
    /// Returns 0 (and leaves the reasons in the trace) when none loads.
    /// </summary>
    public nint TryLoad(string what, params string[] sonames)
    {
        foreach (var dir in _folders)
        {
            if (!Directory.Exists(dir))
            {
                _trace.Add($"{what}: {dir}: folder does not exist");
                continue;
            }
            foreach (var so in sonames)
            {
                string p = Path.Combine(dir, so);
                if (!File.Exists(p)) { _trace.Add($"{what}: {p}: not found"); continue; }
                if (NativeLibrary.TryLoad(p, out var h))
                {
                    _trace.Add($"{what}: {p}: loaded");
                    Loaded[what] = p;
                    return h;
                }
                _trace.Add($"{what}: {p}: exists but dlopen failed (wrong architecture, or a dependency is missing: run `ldd {p}`)");
            }
        }
        foreach (var so in sonames)
        {
            if (NativeLibrary.TryLoad(so, out var h))
            {
                _trace.Add($"{what}: {so}: loaded through the loader's default search (LD_LIBRARY_PATH / ldconfig)");
                Loaded[what] = so + " (default search)";
                return h;
            }
            _trace.Add($"{what}: {so}: not found by the loader's default search either");
        }
        return 0;
    }

    /// <summary>What was loaded, by the name given to <see cref="TryLoad"/>.</summary>
    public Dictionary<string, string> Loaded { get; } = new();

    public string TraceText => string.Join(Environment.NewLine, _trace.Select(t => "  " + t));

    public static nint Export(nint lib, string what, params string[] names)
    {
        foreach (var n in names)
            if (NativeLibrary.TryGetExport(lib, n, out var f)) return f;
        throw new ApbException($"{what} has no export named {string.Join(" or ", names)}: the library is older than this build of apb expects (CUDA 12.x or 13.x)");
    }
}
