using System.CommandLine;

namespace Apb.Cli.Commands;

/// <summary>Options several commands share, and where the embedded default model is found.</summary>
static class CommonOptions
{
    public static Option<string?> Model() => new("--model", "-m")
    {
        Description = "Hugging Face model directory (config.json, *.safetensors, tokenizer.json); default: the embedded model",
    };

    public static Option<string> Device() => new("--device")
    {
        Description = "where to run: cpu, or cuda / cuda:N (an NVIDIA GPU, compute 8.0+; `apb doctor` checks)",
        DefaultValueFactory = _ => "cpu",
    };

    /// <summary>
    /// The embedded default ships beside the binary (models/embedded, copied at build) and in the repository; the first
    /// that exists wins, so `dotnet run` and a published binary both find it.
    /// </summary>
    public static string ResolveModel(string? given)
    {
        if (!string.IsNullOrEmpty(given)) return given;
        var candidates = new List<string> { Path.Combine(AppContext.BaseDirectory, "models", "embedded") };
        for (var d = new DirectoryInfo(Directory.GetCurrentDirectory()); d != null; d = d.Parent)
            candidates.Add(Path.Combine(d.FullName, "models", "embedded"));
        foreach (var c in candidates)
            if (File.Exists(Path.Combine(c, "config.json"))) return c;
        throw new ApbException($"no --model given and the embedded model was not found (looked in {string.Join(", ", candidates.Take(2))}); pass --model DIR");
    }

    /// <summary>The model directory opened, its weight loads reporting their progress on stderr when they take seconds (a GPU's).</summary>
    public static Engine.ModelBundle OpenModel(string? given, Io io)
    {
        var bundle = Engine.ModelBundle.Open(ResolveModel(given));
        bundle.LoadProgress = new Model.LoadProgressLog(io.Err, TimeSpan.FromSeconds(2)).Report;
        return bundle;
    }

    /// <summary>
    /// Creates (or truncates) an output file named by <paramref name="option"/>, before any work: a missing folder, a
    /// directory in its place or a read-only location is an error now, not after a long run.
    /// </summary>
    public static FileStream CreateOutput(string path, string option)
    {
        if (Directory.Exists(path)) throw new ApbException($"{option} {path}: is a directory; give a file path such as {Path.Combine(path, "out.json")}");
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder != null && !Directory.Exists(folder)) throw new ApbException($"{option} {path}: the folder {folder} does not exist; create it first");
        try { return File.Create(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ApbException($"{option} {path}: cannot write the file ({e.Message})", e);
        }
    }

    public static Backends.IBackend Backend(string device) => device switch
    {
        "cpu" => new Backends.Cpu.CpuBackend(),
        _ when CudaOrdinal(device) is int n => new Backends.Cuda.CudaBackend(LaunchedOrdinal(device, n)),
        _ => throw new ApbException($"--device {device} is not available (supported: cpu, cuda, cuda:N)"),
    };

    /// <summary>
    /// The backend of in-process rank <paramref name="rank"/>: on "cuda", GPU rank mod the GPUs visible (ranks spread over
    /// the GPUs instead of piling on one); "cuda:N" and "cpu" as for one rank.
    /// </summary>
    public static Backends.IBackend RankBackend(string device, int rank) =>
        device == "cuda" && Runtime.Launch.LaunchEnvironment.Current is null
            ? new Backends.Cuda.CudaBackend(rank % Math.Max(1, Backends.Cuda.CudaDeviceInfo.Count()))
            : Backend(device);

    /// <summary>
    /// Under `apb launch` (or srun, mpirun) each rank takes GPU LOCAL_RANK of those it sees: "cuda" means that one, and
    /// an explicit cuda:N is refused. LOCAL_RANK is taken mod the GPUs visible, so a task that sees only its own GPU
    /// (srun --gpus-per-task 1 sets CUDA_VISIBLE_DEVICES to one) uses that one.
    /// </summary>
    static int LaunchedOrdinal(string device, int n)
    {
        if (Runtime.Launch.LaunchEnvironment.Current is not { } env) return n;
        if (device != "cuda")
            throw new ApbException($"--device {device}: under apb launch each rank uses GPU LOCAL_RANK ({env.LocalRank} here); pass --device cuda");
        return env.LocalRank % Math.Max(1, Backends.Cuda.CudaDeviceInfo.Count());
    }

    /// <summary>N for "cuda" (0) or "cuda:N"; null for anything else.</summary>
    public static int? CudaOrdinal(string device) =>
        device == "cuda" ? 0 :
        device.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(device.AsSpan(5), out int n) && n >= 0 ? n : null;
}
