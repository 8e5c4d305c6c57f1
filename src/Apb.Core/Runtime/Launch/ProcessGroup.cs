using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Apb.Backends.Cuda;
using Apb.Backends.Cuda.Native;
using Apb.Comms;
using Apb.Strategies;

namespace Apb.Runtime.Launch;

/// <summary>
/// The child's side of `apb launch`: joins this process's rank to the others (the id over the rendezvous, then NCCL)
/// and ties the process's life to its launcher's.
/// </summary>
public static partial class ProcessGroup
{
    /// <summary>
    /// Joins this process's rank to the others: rank 0 serves a rendezvous on MASTER_ADDR:MASTER_PORT and the others
    /// check in; then a CUDA backend joins an NCCL communicator (rank 0 made its id and handed it out), any other backend
    /// a mesh of TCP connections (<see cref="SocketMesh"/>, <see cref="SocketCommunicator"/>). Each step is bounded by
    /// <paramref name="timeout"/>. The rendezvous connections stay open as the group's control channel.
    /// </summary>
    public static (ICommunicator Comm, Func<Action<int, string>, ControlChannel> Control) Connect(LaunchEnvironment env,
        Backends.IBackend backend, TimeSpan timeout)
    {
        var cuda = backend as CudaBackend;
        if (cuda != null && Nccl.TryInitialize() is { } missing) throw new ApbException($"rank {env.Rank}: {missing}");
        byte[] id;
        Socket?[] followers = [];
        Socket? leader = null;
        if (env.Rank == 0)
        {
            id = cuda != null ? NcclCommunicator.NewUniqueId().ToArray() : SocketsMarker;
            followers = env.WorldSize > 1 ? Rendezvous.Serve(new IPEndPoint(ListenAddress(env.MasterAddr), env.MasterPort), env.WorldSize, id, timeout)
                : new Socket?[1];
        }
        else (id, leader) = Rendezvous.Join(env.MasterAddr, env.MasterPort, env.Rank, env.WorldSize, timeout);
        try
        {
            bool sockets = id.AsSpan().SequenceEqual(SocketsMarker);
            if (sockets != (cuda is null))
                throw new ApbException($"rank {env.Rank} runs on {backend.Name} but rank 0 chose {(sockets ? "sockets (a CPU rank)" : "NCCL (a GPU rank)")}: give every rank the same --device");
            ICommunicator comm = sockets
                ? new SocketCommunicator(backend, env.Rank,
                    leader is null ? SocketMesh.Lead(followers, env.MasterAddr, timeout) : SocketMesh.Follow(leader, env.Rank, env.WorldSize, timeout), timeout)
                : NcclCommunicator.Create(cuda!, env.Rank, env.WorldSize, NcclUniqueId.From(id), timeout);
            return (comm, onLost => leader is null ? ControlChannel.Leader(followers, onLost) : ControlChannel.Follower(leader));
        }
        catch
        {
            foreach (var f in followers) f?.Dispose();
            leader?.Dispose();
            throw;
        }
    }

    // What rank 0 hands out instead of an NCCL id when the ranks talk over TCP.
    static readonly byte[] SocketsMarker = "APB-SOCKETS"u8.ToArray();

    /// <summary>Loopback stays loopback (one node, nothing exposed); anything else listens on every interface.</summary>
    static IPAddress ListenAddress(string masterAddr) =>
        IPAddress.TryParse(masterAddr, out var ip) && IPAddress.IsLoopback(ip) ? ip
        : masterAddr == "localhost" ? IPAddress.Loopback : IPAddress.Any;

    /// <summary>
    /// Asks Linux to SIGKILL this process when its launcher dies (prctl PR_SET_PDEATHSIG), so a launcher killed with
    /// SIGKILL leaves no ranks spinning in NCCL on the GPUs. Then checks the launcher did not die before the call.
    /// </summary>
    public static void DieWithLauncher(LaunchEnvironment env)
    {
        if (!OperatingSystem.IsLinux() || env.LauncherPid is not int launcher) return;
        const int PR_SET_PDEATHSIG = 1, SIGKILL = 9;
        try
        {
            prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
            if (getppid() != launcher) Environment.Exit(1);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    [LibraryImport("libc", EntryPoint = "prctl")]
    private static partial int prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    [LibraryImport("libc", EntryPoint = "getppid")]
    private static partial int getppid();
}

public static partial class ProcessGroup
{
    /// <summary>
    /// This process's rank of the group `apb launch` (or Slurm, or Open MPI) started: joins the others (NCCL on a GPU,
    /// GPU LOCAL_RANK; TCP for CPU ranks) and returns the group, which owns the backend. Rank 0 leads it; the other ranks
    /// call <see cref="RankGroup.Follow"/> and serve rank 0's commands until it shuts the group down.
    /// </summary>
    public static RankGroup Open(Checkpoints.ModelConfig config, Model.LlamaWeights weights, Backends.IBackend backend,
        StrategyOptions options, LaunchEnvironment env)
    {
        if (options.Strategy == StrategyKind.Full)
            throw new ApbException("strategy full runs on one rank: under apb launch choose ring, zigzag, ulysses, star or apb (or run without the launcher)");
        var timeout = env.CollectiveTimeout ?? options.CollectiveTimeout;
        var (comm, control) = Connect(env, backend, timeout);
        return RankGroup.Join(config, options with { CollectiveTimeout = timeout }, backend, weights, comm, control);
    }
}
