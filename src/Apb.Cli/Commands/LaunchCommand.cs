using System.CommandLine;
using Apb.Runtime.Launch;

namespace Apb.Cli.Commands;

/// <summary>
/// `apb launch --nproc-per-node N [--nnodes M --node-rank I --master-addr HOST --master-port P] -- COMMAND ...`: one
/// process per local GPU running this same binary, like torchrun. One node is nnodes = 1 (a free loopback port is
/// picked); on several, run the same line on each node with its own --node-rank.
/// </summary>
static class LaunchCommand
{
    /// <summary>The commands that know how to run as one rank of a group.</summary>
    public static readonly string[] Launchable = ["generate", "logits", "bench", "serve"];

    public static Command Create(Io io)
    {
        var nproc = new Option<int>("--nproc-per-node") { Description = "processes (GPUs) on this node", DefaultValueFactory = _ => 1 };
        var nnodes = new Option<int>("--nnodes") { Description = "nodes in the run", DefaultValueFactory = _ => 1 };
        var nodeRank = new Option<int>("--node-rank") { Description = "this node's index, 0..nnodes-1 (node 0 hosts rank 0)", DefaultValueFactory = _ => 0 };
        var addr = new Option<string>("--master-addr") { Description = "address of node 0, where rank 0 hands out the NCCL id", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int?>("--master-port") { Description = "TCP port for that hand-out (default on one node: a free one)" };
        var timeout = new Option<double?>("--timeout") { Description = "seconds the whole run may take before every rank is killed (default: no limit)" };
        var collective = new Option<double?>("--collective-timeout") { Description = "seconds one collective may wait before the rank aborts (default 300)" };
        var command = new Argument<string[]>("command") { Description = "after --: the apb command each rank runs (generate, logits, bench) and its options", Arity = ArgumentArity.ZeroOrMore };
        var cmd = new Command("launch", "run a command on several GPUs, one process per GPU (NCCL), like torchrun")
        {
            nproc, nnodes, nodeRank, addr, port, timeout, collective, command,
        };
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            var child = r.GetValue(command) ?? [];
            if (child.Length == 0 || !Launchable.Contains(child[0]))
                throw new ApbException($"apb launch runs one of {string.Join(", ", Launchable)} after --, got '{string.Join(' ', child)}': e.g. " +
                    "apb launch --nproc-per-node 2 -- logits --model DIR --ids 1,2,3 --strategy ring --device cuda");
            if (LaunchEnvironment.Current is not null)
                throw new ApbException("apb launch was started inside a launched rank (RANK/WORLD_SIZE are set): launchers do not nest");
            return Run(io, new LaunchOptions
            {
                NprocPerNode = r.GetValue(nproc), Nnodes = r.GetValue(nnodes), NodeRank = r.GetValue(nodeRank),
                MasterAddr = r.GetValue(addr)!, MasterPort = r.GetValue(port),
                Timeout = r.GetValue(timeout) is double t ? TimeSpan.FromSeconds(t) : null,
                CollectiveTimeout = r.GetValue(collective) is double c ? TimeSpan.FromSeconds(c) : null,
                Executable = Environment.ProcessPath ?? throw new ApbException("cannot tell which binary this is (Environment.ProcessPath is null)"),
                ChildArgs = child,
            });
        }));
        return cmd;
    }

    /// <summary>Runs the launcher on this binary (under `dotnet apb.dll` the process is dotnet itself: the children get the dll too).</summary>
    public static int Run(Io io, LaunchOptions o)
    {
        if (Path.GetFileNameWithoutExtension(o.Executable) == "dotnet" && Environment.GetCommandLineArgs() is [var dll, ..] && dll.EndsWith(".dll", StringComparison.Ordinal))
            o = o with { ExecutablePrefix = [dll] };
        return Launcher.Run(o, io.Out, io.Err);
    }
}
