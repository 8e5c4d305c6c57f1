using System.Globalization;

namespace Apb.Runtime.Launch;

/// <summary>
/// What `apb launch` tells each child through its environment, with torchrun's names so the same habits work:
/// RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR, MASTER_PORT; plus APB_COLLECTIVE_TIMEOUT
/// (seconds one collective may wait) and APB_LAUNCHER_PID (so a child dies with its launcher). Ranks started by the
/// usual cluster tools without `apb launch` are read too: Slurm's srun (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
/// SLURM_NODEID; rank 0 is on the first host of SLURM_JOB_NODELIST unless MASTER_ADDR says otherwise) and Open MPI's
/// mpirun (OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE). torchrun's names win where both are set; MASTER_PORT
/// defaults to <see cref="DefaultPort"/> for the cluster tools.
/// </summary>
public sealed record LaunchEnvironment(int Rank, int WorldSize, int LocalRank, int LocalWorldSize, int NodeRank,
    string MasterAddr, int MasterPort, TimeSpan? CollectiveTimeout = null, int? LauncherPid = null)
{
    /// <summary>
    /// NVLink multicast (NVLS) can take the host's GPUs out of service on the machines we run on: off in every child,
    /// whatever the caller's environment says.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string> NvlsOff = new Dictionary<string, string>
    {
        ["NCCL_NVLS_ENABLE"] = "0",
        ["TORCH_SYMM_MEM_DISABLE_MULTICAST"] = "1",
        ["NVSHMEM_DISABLE_NVLS"] = "1",
    };

    /// <summary>The environment of this process, or null when it was not started by a launcher (no RANK / WORLD_SIZE).</summary>
    public static LaunchEnvironment? Current { get; } = Read(Environment.GetEnvironmentVariable);

    /// <summary>The rendezvous port of ranks started by Slurm or Open MPI when MASTER_PORT is not set.</summary>
    public const int DefaultPort = 29500;

    /// <summary>
    /// Null when no launcher's variables are set; an error naming the variable when one is present but malformed.
    /// torchrun's variables first, then Slurm's, then Open MPI's.
    /// </summary>
    public static LaunchEnvironment? Read(Func<string, string?> env)
    {
        if (env("RANK") is null && env("WORLD_SIZE") is null)
            return FromSlurm(env) ?? FromOpenMpi(env);
        return FromTorchrun(env);
    }

    static LaunchEnvironment FromTorchrun(Func<string, string?> env)
    {
        int Int(string name, int? fallback = null)
        {
            string? v = env(name);
            if (v is null && fallback is int f) return f;
            if (v is null) throw new ApbException($"{name} is not set, but RANK/WORLD_SIZE are: start ranks with `apb launch`, or set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT together");
            if (!int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) || n < 0)
                throw new ApbException($"{name}={v} is not a non-negative integer");
            return n;
        }
        int world = Int("WORLD_SIZE"), rank = Int("RANK");
        if (world < 1 || rank >= world) throw new ApbException($"RANK={rank} is outside WORLD_SIZE={world}");
        int local = Int("LOCAL_RANK", rank);
        int localWorld = Int("LOCAL_WORLD_SIZE", world);
        TimeSpan? timeout = env("APB_COLLECTIVE_TIMEOUT") is { } t
            ? double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double s) && s > 0 ? TimeSpan.FromSeconds(s)
              : throw new ApbException($"APB_COLLECTIVE_TIMEOUT={t} is not a positive number of seconds")
            : null;
        int? launcher = env("APB_LAUNCHER_PID") is { } p && int.TryParse(p, out int pid) ? pid : null;
        return new LaunchEnvironment(rank, world, local, localWorld, Int("NODE_RANK", 0),
            env("MASTER_ADDR") ?? "127.0.0.1", Int("MASTER_PORT"), timeout, launcher);
    }

    /// <summary>srun's task variables; null when there are none (not a Slurm task, or a job step of one task).</summary>
    static LaunchEnvironment? FromSlurm(Func<string, string?> env)
    {
        // One task (an interactive srun, a batch script's own shell) is not a group.
        if (env("SLURM_PROCID") is null || env("SLURM_NTASKS") is null or "1") return null;
        var v = new Dictionary<string, string?>
        {
            ["RANK"] = env("SLURM_PROCID"), ["WORLD_SIZE"] = env("SLURM_NTASKS"), ["LOCAL_RANK"] = env("SLURM_LOCALID"),
            ["LOCAL_WORLD_SIZE"] = env("SLURM_NTASKS_PER_NODE") is { } t && int.TryParse(t, out _) ? t : env("SLURM_NTASKS"),
            ["NODE_RANK"] = env("SLURM_NODEID") ?? "0",
            ["MASTER_ADDR"] = env("MASTER_ADDR") ?? FirstHost(env("SLURM_JOB_NODELIST") ?? env("SLURM_NODELIST")) ?? "127.0.0.1",
            ["MASTER_PORT"] = env("MASTER_PORT") ?? DefaultPort.ToString(CultureInfo.InvariantCulture),
            ["APB_COLLECTIVE_TIMEOUT"] = env("APB_COLLECTIVE_TIMEOUT"),
        };
        return FromTorchrun(k => v.GetValueOrDefault(k));
    }

    /// <summary>mpirun's world variables; several nodes need MASTER_ADDR (Open MPI does not say where rank 0 runs).</summary>
    static LaunchEnvironment? FromOpenMpi(Func<string, string?> env)
    {
        if (env("OMPI_COMM_WORLD_RANK") is null || env("OMPI_COMM_WORLD_SIZE") is null or "1") return null;
        string? localSize = env("OMPI_COMM_WORLD_LOCAL_SIZE"), size = env("OMPI_COMM_WORLD_SIZE");
        if (env("MASTER_ADDR") is null && localSize != null && localSize != size)
            throw new ApbException($"mpirun started {size} ranks over several nodes ({localSize} on this one): set MASTER_ADDR to the address of rank 0's node (mpirun -x MASTER_ADDR=host)");
        var v = new Dictionary<string, string?>
        {
            ["RANK"] = env("OMPI_COMM_WORLD_RANK"), ["WORLD_SIZE"] = size, ["LOCAL_RANK"] = env("OMPI_COMM_WORLD_LOCAL_RANK"),
            ["LOCAL_WORLD_SIZE"] = localSize, ["NODE_RANK"] = env("OMPI_COMM_WORLD_NODE_RANK") ?? "0",
            ["MASTER_ADDR"] = env("MASTER_ADDR") ?? "127.0.0.1",
            ["MASTER_PORT"] = env("MASTER_PORT") ?? DefaultPort.ToString(CultureInfo.InvariantCulture),
            ["APB_COLLECTIVE_TIMEOUT"] = env("APB_COLLECTIVE_TIMEOUT"),
        };
        return FromTorchrun(k => v.GetValueOrDefault(k));
    }

    /// <summary>
    /// The first host of a Slurm node list: "gpu[03-05,07],cpu1" -> "gpu03"; "node1,node2" -> "node1"; "a-[1-2]" -> "a-1".
    /// Null for an empty list.
    /// </summary>
    public static string? FirstHost(string? nodeList)
    {
        if (string.IsNullOrWhiteSpace(nodeList)) return null;
        var s = nodeList.Trim();
        int bracket = s.IndexOf('['), comma = s.IndexOf(',');
        if (bracket < 0 || (comma >= 0 && comma < bracket)) return comma < 0 ? s : s[..comma];
        int close = s.IndexOf(']', bracket);
        if (close < 0) throw new ApbException($"SLURM_JOB_NODELIST={nodeList}: an unclosed '['");
        string first = s[(bracket + 1)..close].Split(',')[0].Split('-')[0];
        return s[..bracket] + first;
    }

    /// <summary>The variables a child gets (added to the launcher's own environment).</summary>
    public Dictionary<string, string> ToVariables()
    {
        var v = new Dictionary<string, string>(NvlsOff)
        {
            ["RANK"] = Str(Rank), ["WORLD_SIZE"] = Str(WorldSize), ["LOCAL_RANK"] = Str(LocalRank),
            ["LOCAL_WORLD_SIZE"] = Str(LocalWorldSize), ["NODE_RANK"] = Str(NodeRank),
            ["MASTER_ADDR"] = MasterAddr, ["MASTER_PORT"] = Str(MasterPort),
        };
        if (CollectiveTimeout is { } t) v["APB_COLLECTIVE_TIMEOUT"] = t.TotalSeconds.ToString(CultureInfo.InvariantCulture);
        if (LauncherPid is int pid) v["APB_LAUNCHER_PID"] = Str(pid);
        return v;
    }

    static string Str(int n) => n.ToString(CultureInfo.InvariantCulture);
}
