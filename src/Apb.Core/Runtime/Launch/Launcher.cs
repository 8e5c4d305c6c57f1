using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Apb.Runtime.Launch;

/// <summary>What `apb launch` starts: the node's share of the ranks, where rank 0 listens, and the child command.</summary>
public sealed record LaunchOptions
{
    public int NprocPerNode { get; init; } = 1;
    public int Nnodes { get; init; } = 1;
    public int NodeRank { get; init; }
    public string MasterAddr { get; init; } = "127.0.0.1";
    /// <summary>Null on one node: a free loopback port is picked. Required with several nodes.</summary>
    public int? MasterPort { get; init; }
    /// <summary>Longest the whole run may take before every child is killed (null: no limit).</summary>
    public TimeSpan? Timeout { get; init; }
    /// <summary>Passed to the children as APB_COLLECTIVE_TIMEOUT (null: their default).</summary>
    public TimeSpan? CollectiveTimeout { get; init; }
    /// <summary>The program each child runs: this apb binary in production, a fake child in tests.</summary>
    public required string Executable { get; init; }
    /// <summary>Arguments placed before <see cref="ChildArgs"/> (e.g. "-c script" for a shell in tests).</summary>
    public IReadOnlyList<string> ExecutablePrefix { get; init; } = [];
    public required IReadOnlyList<string> ChildArgs { get; init; }
    /// <summary>How long killed children get to go before the launcher gives up waiting on them.</summary>
    public TimeSpan KillWait { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>
    /// After one rank fails, how long the others get to end on their own before they are killed: rank 0 of a server
    /// learns of a dead rank at once (its control channel closes), answers the requests in flight with 503 and exits;
    /// killing it first would cut those connections instead.
    /// </summary>
    public TimeSpan FailureGrace { get; init; } = TimeSpan.FromSeconds(5);

    public int WorldSize => NprocPerNode * Nnodes;

    public void Validate()
    {
        if (NprocPerNode < 1) throw new ApbException($"--nproc-per-node must be at least 1, got {NprocPerNode}");
        if (Nnodes < 1) throw new ApbException($"--nnodes must be at least 1, got {Nnodes}");
        if (NodeRank < 0 || NodeRank >= Nnodes) throw new ApbException($"--node-rank {NodeRank} is outside 0..{Nnodes - 1} (--nnodes {Nnodes})");
        if (Nnodes > 1 && MasterPort is null)
            throw new ApbException("with --nnodes above 1 every node needs the same --master-addr (an address of node 0 the others can reach) and --master-port");
        if (MasterPort is < 1 or > 65535) throw new ApbException($"--master-port {MasterPort} is not a TCP port (1..65535)");
        if (ChildArgs.Count == 0) throw new ApbException("nothing to launch: give the command after --, e.g. apb launch --nproc-per-node 2 -- logits --model DIR --ids 1,2,3 --strategy ring --device cuda");
    }
}

/// <summary>
/// Runs one child process per local rank, like torchrun: each gets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT
/// (and NVLink multicast switched off). Rank 0's stdout is passed through unchanged (the result); every other line is
/// sent to stderr prefixed with [rank i]. When a child exits non-zero the others get <see cref="LaunchOptions.FailureGrace"/>
/// to end on their own, then they are killed (process trees, no orphans), as they are at once when the run outlives its
/// timeout; the launcher fails naming the rank. When the launcher itself is stopped
/// (Ctrl-C, SIGTERM) it takes its children with it.
/// </summary>
public static class Launcher
{
    public static int Run(LaunchOptions o, TextWriter stdout, TextWriter stderr)
    {
        o.Validate();
        int port = o.MasterPort ?? FreePort();
        int first = o.NodeRank * o.NprocPerNode;
        var children = new Process[o.NprocPerNode];
        var readers = new List<Thread>();
        var errLock = new object();
        void Err(string line)
        {
            lock (errLock) { stderr.WriteLine(line); stderr.Flush(); }
        }

        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; KillAll(children, o.KillWait); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; KillAll(children, o.KillWait); });
        try
        {
            for (int local = 0; local < o.NprocPerNode; local++)
            {
                int rank = first + local;
                var env = new LaunchEnvironment(rank, o.WorldSize, local, o.NprocPerNode, o.NodeRank, o.MasterAddr, port,
                    o.CollectiveTimeout, Environment.ProcessId);
                var psi = new ProcessStartInfo(o.Executable)
                {
                    RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
                };
                foreach (var a in o.ExecutablePrefix) psi.ArgumentList.Add(a);
                foreach (var a in o.ChildArgs) psi.ArgumentList.Add(a);
                foreach (var (k, v) in env.ToVariables()) psi.Environment[k] = v;
                Process p;
                try { p = Process.Start(psi) ?? throw new ApbException($"could not start {o.Executable}"); }
                catch (System.ComponentModel.Win32Exception e) { throw new ApbException($"could not start rank {rank} ({o.Executable}): {e.Message}"); }
                children[local] = p;
                Err($"[launch] rank {rank}: pid {p.Id}, LOCAL_RANK {local}");
                if (rank == 0) readers.Add(Pump(p.StandardOutput, text => { lock (errLock) { stdout.Write(text); stdout.Flush(); } }));
                else readers.Add(Lines(p.StandardOutput, line => Err($"[rank {rank}] {line}")));
                string prefix = rank == 0 ? "" : $"[rank {rank}] ";
                readers.Add(Lines(p.StandardError, line => Err(prefix + line)));
            }

            var started = Stopwatch.GetTimestamp();
            string? failure = null;
            bool timedOut = false;
            while (failure is null && !children.All(c => c.HasExited))
            {
                foreach (var (c, local) in children.Select((c, i) => (c, i)))
                    if (c.HasExited && c.ExitCode != 0)
                    {
                        failure = $"rank {first + local} exited with code {c.ExitCode}{Signal(c.ExitCode)}";
                        break;
                    }
                if (failure is null && o.Timeout is { } t && Stopwatch.GetElapsedTime(started) > t)
                {
                    var running = children.Select((c, i) => (c, i)).Where(x => !x.c.HasExited).Select(x => first + x.i);
                    timedOut = true;
                    failure = $"the run passed --timeout {t.TotalSeconds:0.#} s with rank(s) {string.Join(", ", running)} still running";
                }
                if (failure is null) Thread.Sleep(50);
            }
            if (failure is null)
            {
                // All exited on their own; one may still have failed after the last check.
                for (int i = 0; i < children.Length && failure is null; i++)
                    if (children[i].ExitCode != 0) failure = $"rank {first + i} exited with code {children[i].ExitCode}{Signal(children[i].ExitCode)}";
            }
            if (failure is not null)
            {
                var graceEnds = Stopwatch.GetTimestamp() + (long)((timedOut ? 0 : o.FailureGrace.TotalSeconds) * Stopwatch.Frequency);
                while (!children.All(c => c.HasExited) && Stopwatch.GetTimestamp() < graceEnds) Thread.Sleep(50);
                var stopped = children.Select((c, i) => (c, i)).Where(x => !x.c.HasExited).Select(x => first + x.i).ToArray();
                KillAll(children, o.KillWait);
                foreach (var r in readers) r.Join(TimeSpan.FromSeconds(2));
                Err($"error: {failure}" + (stopped.Length > 0 ? $"; stopped rank(s) {string.Join(", ", stopped)}" : ""));
                return 1;
            }
            foreach (var r in readers) r.Join(TimeSpan.FromSeconds(10));
            return 0;
        }
        finally
        {
            KillAll(children, o.KillWait);
            foreach (var c in children) c?.Dispose();
        }
    }

    static string Signal(int code) => code switch
    {
        137 => " (SIGKILL: killed, or out of memory)",
        139 => " (SIGSEGV)",
        134 => " (SIGABRT)",
        143 => " (SIGTERM)",
        _ => "",
    };

    static void KillAll(Process?[] children, TimeSpan wait)
    {
        foreach (var c in children)
        {
            if (c is null) continue;
            try { if (!c.HasExited) c.Kill(entireProcessTree: true); }
            catch (InvalidOperationException) { } // exited meanwhile
        }
        var deadline = Stopwatch.GetTimestamp() + (long)(wait.TotalSeconds * Stopwatch.Frequency);
        foreach (var c in children)
        {
            if (c is null) continue;
            var left = TimeSpan.FromSeconds((double)(deadline - Stopwatch.GetTimestamp()) / Stopwatch.Frequency);
            try { c.WaitForExit(left > TimeSpan.Zero ? left : TimeSpan.Zero); }
            catch (InvalidOperationException) { }
        }
    }

    /// <summary>Rank 0's stdout as it comes, not line by line: generate streams tokens without newlines.</summary>
    static Thread Pump(StreamReader from, Action<string> write)
    {
        var t = new Thread(() =>
        {
            var buf = new char[4096];
            int n;
            try { while ((n = from.Read(buf, 0, buf.Length)) > 0) write(new string(buf, 0, n)); }
            catch (IOException) { }
        }) { IsBackground = true, Name = "apb launch stdout" };
        t.Start();
        return t;
    }

    static Thread Lines(StreamReader from, Action<string> write)
    {
        var t = new Thread(() =>
        {
            try { while (from.ReadLine() is { } line) write(line); }
            catch (IOException) { }
        }) { IsBackground = true, Name = "apb launch lines" };
        t.Start();
        return t;
    }

    /// <summary>A free TCP port on loopback for a one-node run (the small race with another program is accepted, as torchrun does).</summary>
    public static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }
}
