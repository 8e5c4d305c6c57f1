using System.Globalization;

namespace Apb.Runtime.Launch;

/// <summary>
/// What `apb launch` tells each child through its environment, with torchrun's names so the same habits work:
/// RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR, MASTER_PORT; plus APB_COLLECTIVE_TIMEOUT
/// (seconds one collective may wait) and APB_LAUNCHER_PID (so a child dies with its launcher).
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

    /// <summary>Null without RANK and WORLD_SIZE; an error naming the variable when one is present but malformed.</summary>
    public static LaunchEnvironment? Read(Func<string, string?> env)
    {
        if (env("RANK") is null && env("WORLD_SIZE") is null) return null;
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
