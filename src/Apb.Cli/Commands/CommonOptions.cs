using System.CommandLine;

namespace Apb.Cli.Commands;

/// <summary>Options several commands share, and where the embedded default model is found.</summary>
static class CommonOptions
{
    public static Option<string?> Model() => new("--model", "-m")
    {
        Description = "Hugging Face model directory (config.json, *.safetensors, tokenizer.json); also the first argument; default: the embedded model",
    };

    /// <summary>-q everywhere: no progress or log lines on stderr, only results and errors.</summary>
    public static Option<bool> Quiet() => new("--quiet", "-q") { Description = "no progress or log lines on stderr (results and errors still print)" };

    /// <summary>
    /// Context lengths, one name for every command that takes them: --lengths (-l), with --length and --contexts kept
    /// as the older spellings.
    /// </summary>
    public static Option<string> Lengths(string description, string dflt) => new("--lengths", LengthAliases)
    {
        Description = description + " (4096, 4k, 16K; a comma list for several)", DefaultValueFactory = _ => dflt,
    };

    /// <summary><see cref="Lengths"/> where the default is the command's own choice (null when not given).</summary>
    public static Option<string?> OptionalLengths(string description) => new("--lengths", LengthAliases) { Description = description };

    static readonly string[] LengthAliases = ["--length", "-l", "--contexts"];

    /// <summary>Ranks of a sequence-parallel strategy when --ranks is not given (full attention runs on one); under apb launch, the processes.</summary>
    public const int DefaultRanks = 4;

    public static int RanksFor(Strategies.StrategyKind kind, int? given) =>
        given ?? (kind == Strategies.StrategyKind.Full ? 1 : Runtime.Launch.LaunchEnvironment.Current?.WorldSize ?? DefaultRanks);

    public static Option<string> Device() => new("--device")
    {
        Description = "where to run: cpu, or cuda / cuda:N (an NVIDIA GPU, compute 8.0+; `apb doctor` checks)",
        DefaultValueFactory = _ => "cpu",
    };

    /// <summary>Where `dotnet publish` puts the embedded model: models/embedded beside the binary (Apb.Cli.csproj's Content items).</summary>
    public static string BesideBinary => Path.Combine(AppContext.BaseDirectory, "models", "embedded");

    /// <summary>
    /// The embedded default is found beside the binary (a published or copied `apb` folder), else in models/embedded
    /// of the working directory or a folder above it (`dotnet run` in the repository); the first that exists wins.
    /// </summary>
    public static string ResolveModel(string? given)
    {
        if (!string.IsNullOrEmpty(given)) return given;
        var candidates = new List<string> { BesideBinary };
        for (var d = new DirectoryInfo(Directory.GetCurrentDirectory()); d != null; d = d.Parent)
            candidates.Add(Path.Combine(d.FullName, "models", "embedded"));
        foreach (var c in candidates)
            if (File.Exists(Path.Combine(c, "config.json"))) return c;
        throw new ApbException($"no --model given and the embedded model was not found: looked for config.json in {BesideBinary} " +
            $"(beside the binary) and in models/embedded of {Directory.GetCurrentDirectory()} and every folder above it. " +
            "Copy the whole publish folder (the binary and its models/ folder), or pass a model folder: apb generate DIR");
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
    /// directory in its place or a read-only location is an error now, not after a long run. Others may read it while
    /// it is written (an eval's JSON holds every finished row as the run goes: `apb eval paired` can read it then).
    /// <paramref name="truncate"/> false opens an existing file as it is (`eval ruler --resume` rewrites it whole).
    /// </summary>
    public static FileStream CreateOutput(string path, string option, bool truncate = true)
    {
        if (path == "-") throw new ApbException($"{option} -: this command writes a file here, not stdout; give a file path");
        if (Directory.Exists(path)) throw new ApbException($"{option} {path}: is a directory; give a file path such as {Path.Combine(path, "out.json")}");
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder != null && !Directory.Exists(folder)) throw new ApbException($"{option} {path}: the folder {folder} does not exist; create it first");
        try { return new FileStream(path, truncate ? FileMode.Create : FileMode.OpenOrCreate, FileAccess.Write, FileShare.Read); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ApbException($"{option} {path}: cannot write the file ({e.Message})", e);
        }
    }

    /// <summary>
    /// An output named by <paramref name="option"/>: "-" is stdout (<paramref name="io"/>'s, UTF-8), anything else a file
    /// created before any work (<see cref="CreateOutput"/>).
    /// </summary>
    public static Stream OpenOutput(string path, string option, Io io, bool truncate = true) =>
        path == "-" ? new WriterStream(io.Out) : CreateOutput(path, option, truncate);

    /// <summary>
    /// A bench's --out: its JSON (and markdown) files go there, and its table to stdout already, so "-" is refused
    /// rather than read as a file named "-".
    /// </summary>
    public static string? BenchOutput(string? path, string command) => path == "-"
        ? throw new ApbException($"--out -: {command} prints its table on stdout and writes its JSON to a file or folder; give a path (stdout for JSON is for logits, eval generate and eval ruler)")
        : path;

    public const string PrefillAttentionHelp = "the prefill attention's first product: bf16 (default) | fp8 (S = Q K^T in e4m3, q scaled per row " +
        "and head, k per 128 keys and KV head; P V stays bf16): on an H200 1.18x faster attention at 64K-128K and a 128K prefill 9.9 -> 8.7 s, " +
        "within 0.3 points of bf16 on `apb eval ruler`, full attention and APB (docs/notes/fp8-attention.md). Hopper GPUs (sm_90) and the " +
        "CPU, which rounds q and k the same way and computes in f32 (the reference)";

    /// <summary>--prefill-attention, as generate, logits, serve, eval ruler, bench prefill and bench serve take it.</summary>
    public static Option<string?> PrefillAttention() => new("--prefill-attention") { Description = PrefillAttentionHelp };

    /// <summary>
    /// --prefill-attention read: true for fp8, false for bf16, null when not given (the backend's default, which the
    /// study variable APB_ATTENTION_QK_FP8=1 still turns on).
    /// </summary>
    public static bool? Fp8Attention(string? value) => value switch
    {
        null => null,
        "bf16" => false,
        "fp8" => true,
        _ => throw new ApbException($"--prefill-attention {value}: expected bf16 or fp8"),
    };

    /// <summary>
    /// Whether a backend made with <paramref name="fp8"/> computes Q K^T in e4m3: the flag, else the backends' default
    /// (<see cref="Backends.Qk8.EnvironmentDefault"/>): what the lines and labels that describe a run say.
    /// </summary>
    public static bool Fp8AttentionInEffect(bool? fp8) => fp8 ?? Backends.Qk8.EnvironmentDefault;

    /// <param name="fp8Attention">--prefill-attention (<see cref="Fp8Attention"/>); null leaves the backend's default</param>
    public static Backends.IBackend Backend(string device, bool? fp8Attention = null) => WithAttention(device switch
    {
        "cpu" => new Backends.Cpu.CpuBackend(),
        _ when CudaOrdinal(device) is int n => new Backends.Cuda.CudaBackend(LaunchedOrdinal(device, n)),
        _ => throw new ApbException($"--device {device} is not available (supported: cpu, cuda, cuda:N)"),
    }, fp8Attention);

    /// <summary>
    /// The backend of in-process rank <paramref name="rank"/>: on "cuda", GPU rank mod the GPUs visible (ranks spread over
    /// the GPUs instead of piling on one); "cuda:N" and "cpu" as for one rank.
    /// </summary>
    public static Backends.IBackend RankBackend(string device, int rank, bool? fp8Attention = null) =>
        device == "cuda" && Runtime.Launch.LaunchEnvironment.Current is null
            ? WithAttention(new Backends.Cuda.CudaBackend(rank % Math.Max(1, Backends.Cuda.CudaDeviceInfo.Count())), fp8Attention)
            : Backend(device, fp8Attention);

    /// <summary>
    /// Sets the backend's QK8 switch as --prefill-attention asks. A GPU without the Hopper kernel refuses fp8 (the
    /// backend is disposed before the error goes up): no silent bf16 run under an fp8 label.
    /// </summary>
    static Backends.IBackend WithAttention(Backends.IBackend backend, bool? fp8)
    {
        if (fp8 is not { } on) return backend;
        try { backend.AttentionQkFp8 = on; }
        catch { backend.Dispose(); throw; }
        return backend;
    }

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
