using System.Diagnostics;
using Apb.Runtime.Launch;
using Xunit;

namespace Apb.Tests.Distributed.Launch;

/// <summary>The launcher with fake children: /bin/sh scripts that read the rank from the environment.</summary>
public class LauncherTests
{
    static LaunchOptions Shell(string script, int nproc = 2) => new()
    {
        NprocPerNode = nproc, Executable = "/bin/sh", ExecutablePrefix = ["-c", script, "sh"], ChildArgs = ["logits", "--x"],
        KillWait = TimeSpan.FromSeconds(5),
    };

    static (int Code, string Out, string Err, TimeSpan Took) Run(LaunchOptions o)
    {
        var (so, se) = (new StringWriter(), new StringWriter());
        var sw = Stopwatch.StartNew();
        int code = Launcher.Run(o, so, se);
        return (code, so.ToString(), se.ToString(), sw.Elapsed);
    }

    static bool Alive(int pid) => Directory.Exists($"/proc/{pid}") && !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z ");

    [Fact]
    public void ChildrenGetTheirRanksAndOnlyRankZerosStdoutIsTheResult()
    {
        var r = Run(Shell("echo \"out $RANK/$WORLD_SIZE/$LOCAL_RANK $MASTER_ADDR nvls=$NCCL_NVLS_ENABLE args=$*\"; echo \"err $RANK\" >&2"));
        Assert.Equal(0, r.Code);
        Assert.Equal("out 0/2/0 127.0.0.1 nvls=0 args=logits --x" + Environment.NewLine, r.Out);
        Assert.Contains("[rank 1] out 1/2/1 127.0.0.1 nvls=0 args=logits --x", r.Err);
        Assert.Contains("[rank 1] err 1", r.Err);
        Assert.Contains("err 0", r.Err);
        Assert.DoesNotContain("[rank 0]", r.Err);
    }

    [Fact]
    public void AFailingRankStopsTheOthersAndIsNamed()
    {
        string pids = Path.Combine(Path.GetTempPath(), $"apb-launch-{Guid.NewGuid():N}");
        Directory.CreateDirectory(pids);
        try
        {
            // Rank 0 would run for a minute and then leave a mark; rank 1 fails once rank 0 has written its pid. Only a
            // launcher that stopped rank 0 returns with no mark there (one that waited for it returns after the minute).
            var r = Run(Shell($"echo $$ > {pids}/$RANK; if [ $RANK = 1 ]; then while [ ! -s {pids}/0 ]; do sleep 0.05; done; exit 3; fi; sleep 60; touch {pids}/finished$RANK"));
            Assert.Equal(1, r.Code);
            Assert.Contains("error: rank 1 exited with code 3; stopped rank(s) 0", r.Err);
            Assert.False(File.Exists(Path.Combine(pids, "finished0")), $"rank 0 ran to its end: it was not stopped (launcher took {r.Took})");
            int rank0 = int.Parse(File.ReadAllText(Path.Combine(pids, "0")).Trim());
            Assert.False(Alive(rank0), "rank 0 was left running");
        }
        finally { Directory.Delete(pids, true); }
    }

    [Fact]
    public void RanksThatEndOnTheirOwnAfterAFailureAreNotKilled()
    {
        string marks = Path.Combine(Path.GetTempPath(), $"apb-launch-{Guid.NewGuid():N}");
        Directory.CreateDirectory(marks);
        try
        {
            // Rank 0 (a server) notices that rank 1 died, finishes its answers and exits on its own within the grace:
            // it must not be killed half-way (its mark is written after the other rank is gone).
            var r = Run(Shell($"if [ $RANK = 1 ]; then touch {marks}/gone; exit 3; fi; while [ ! -e {marks}/gone ]; do sleep 0.05; done; sleep 0.5; touch {marks}/drained; exit 1"));
            Assert.Equal(1, r.Code);
            Assert.True(File.Exists(Path.Combine(marks, "drained")), r.Err);
            Assert.Contains("error: rank 1 exited with code 3", r.Err);
            Assert.DoesNotContain("stopped rank(s)", r.Err);
            Assert.True(r.Took < TimeSpan.FromSeconds(5), $"took {r.Took}"); // ended when rank 0 did, not at the grace's end
        }
        finally { Directory.Delete(marks, true); }
    }

    [Fact]
    public void ARunPastItsTimeoutIsKilled()
    {
        string marks = Path.Combine(Path.GetTempPath(), $"apb-launch-{Guid.NewGuid():N}");
        Directory.CreateDirectory(marks);
        try
        {
            // Each rank leaves a mark only if it runs its minute out: a killed run leaves none.
            var r = Run(Shell($"sleep 60; touch {marks}/finished$RANK") with { Timeout = TimeSpan.FromSeconds(1) });
            Assert.Equal(1, r.Code);
            Assert.Contains("--timeout 1 s with rank(s) 0, 1 still running", r.Err);
            Assert.Empty(Directory.GetFiles(marks));
        }
        finally { Directory.Delete(marks, true); }
    }

    [Fact]
    public void ASecondNodeNumbersItsRanksAfterTheFirst()
    {
        var o = Shell("echo \"$RANK $LOCAL_RANK $NODE_RANK $MASTER_ADDR:$MASTER_PORT\"") with
            { Nnodes = 2, NodeRank = 1, MasterAddr = "10.1.2.3", MasterPort = 29511 };
        var r = Run(o);
        Assert.Equal(0, r.Code);
        Assert.Equal("", r.Out); // rank 0 lives on node 0
        Assert.Contains("[rank 2] 2 0 1 10.1.2.3:29511", r.Err);
        Assert.Contains("[rank 3] 3 1 1 10.1.2.3:29511", r.Err);
    }

    [Fact]
    public void OptionsAreCheckedBeforeAnythingStarts()
    {
        var e = Assert.Throws<ApbException>(() => Run(Shell("true") with { Nnodes = 2 }));
        Assert.Contains("--master-port", e.Message);
        e = Assert.Throws<ApbException>(() => Run(Shell("true") with { Nnodes = 2, NodeRank = 2, MasterPort = 1 }));
        Assert.Contains("--node-rank 2", e.Message);
        e = Assert.Throws<ApbException>(() => Run(Shell("true") with { ChildArgs = [] }));
        Assert.Contains("nothing to launch", e.Message);
        e = Assert.Throws<ApbException>(() => Run(Shell("true") with { Executable = "/nonexistent/apb" }));
        Assert.Contains("could not start rank 0", e.Message);
    }

    [Fact]
    public void TheCliRefusesCommandsThatCannotRunAsARank()
    {
        var inspect = CliRun.Apb("launch", "--nproc-per-node", "2", "--", "inspect");
        Assert.Equal(1, inspect.Code);
        Assert.Contains("apb launch runs one of generate, logits, bench, serve after --, got 'inspect'", inspect.Err);
        var nothing = CliRun.Apb("launch", "--nproc-per-node", "2");
        Assert.Equal(1, nothing.Code);
        Assert.Contains("got ''", nothing.Err);
    }
}
