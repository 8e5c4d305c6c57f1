using System.Diagnostics;
using Apb.Backends.Cpu;
using Apb.Engine;
using Apb.Runtime;
using Apb.Runtime.Launch;
using Apb.Strategies;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Runtime;

/// <summary>
/// Process groups over TCP (the CPU transport): the same ranks as separate processes, led by rank 0 over the control
/// channel. Here first as threads that each join through the launcher's environment (the whole network path, in one
/// test process), then as real processes started by `apb launch`.
/// </summary>
public class ProcessGroupTests
{
    static LaunchEnvironment Env(int rank, int world, int port) =>
        new(rank, world, rank, world, 0, "127.0.0.1", port, TimeSpan.FromSeconds(30));

    [Theory(Timeout = 120_000)]
    [InlineData(StrategyKind.Ring, 3)]
    [InlineData(StrategyKind.Apb, 4)]
    [InlineData(StrategyKind.ApbBalanced, 2)]
    [InlineData(StrategyKind.Ulysses, 2)]
    public async Task ASocketGroupMatchesTheSameRanksAsThreads(StrategyKind strategy, int ranks)
    {
        var m = LoadModel(strategy == StrategyKind.Ulysses ? "llama-headdim-sharded" : "embedded");
        var o = Options(strategy, ranks) with { AnchorLength = 8, PassingLength = 4 };
        var context = Ids(70, 1, m.Config.VocabSize);
        var query = Ids(3, 2, m.Config.VocabSize);

        var want = new List<float[]>();
        using (var threads = RankGroup.Create(m.Config, o, _ => new CpuBackend(), _ => m.Weights))
        {
            var r = threads.Prefill(new PrefillRequest(context, query));
            want.Add(r.Logits);
            for (int i = 0; i < 3; i++) want.Add(threads.Decode([r.Sequence], [Sampler.ArgMax(want[^1])])[0]);
        }

        int port = Launcher.FreePort();
        var followers = Enumerable.Range(1, ranks - 1).Select(rank => Task.Run(() =>
        {
            using var g = ProcessGroup.Open(m.Config, m.Weights, new CpuBackend(), o, Env(rank, ranks, port));
            Assert.False(g.IsLeader);
            g.Follow();
        })).ToArray();
        using (var leader = await Task.Run(() => ProcessGroup.Open(m.Config, m.Weights, new CpuBackend(), o, Env(0, ranks, port))))
        {
            Assert.True(leader.IsLeader);
            var r = leader.Prefill(new PrefillRequest(context, query));
            var got = new List<float[]> { r.Logits };
            for (int i = 0; i < 3; i++) got.Add(leader.Decode([r.Sequence], [Sampler.ArgMax(got[^1])])[0]);
            for (int i = 0; i < want.Count; i++) Assert.Equal(want[i], got[i]); // fp32 on both transports: the same bits
            var reports = leader.Reports(r.Sequence);
            Assert.Equal(ranks, reports.Count);
            leader.Release([r.Sequence]);
        }
        await Task.WhenAll(followers); // the leader's Dispose shut them down
    }

    [Fact(Timeout = 120_000)]
    public async Task AFollowerThatDiesFailsTheGroupAtOnceNamingIt()
    {
        var m = LoadModel("embedded");
        var o = Options(StrategyKind.Ring, 3) with { CollectiveTimeout = TimeSpan.FromSeconds(60) };
        int port = Launcher.FreePort();
        RankGroup? victim = null;
        var ready = new TaskCompletionSource();
        var followers = new[]
        {
            Task.Run(() => { using var g = ProcessGroup.Open(m.Config, m.Weights, new CpuBackend(), o, Env(1, 3, port)); try { g.Follow(); } catch (ApbException) { } }),
            Task.Run(() =>
            {
                victim = ProcessGroup.Open(m.Config, m.Weights, new CpuBackend(), o, Env(2, 3, port));
                ready.SetResult();
            }),
        };
        using var leader = await Task.Run(() => ProcessGroup.Open(m.Config, m.Weights, new CpuBackend(), o, Env(0, 3, port)));
        await ready.Task;
        var watch = Stopwatch.StartNew();
        victim!.Dispose(); // rank 2's process goes away without a word: its connections close
        var e = await Assert.ThrowsAsync<ApbException>(() => Task.Run(() =>
            leader.Prefill(new PrefillRequest(Ids(60, 1, m.Config.VocabSize), Ids(3, 2, m.Config.VocabSize)))));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"took {watch.Elapsed}"); // not the 60 s collective timeout
        Assert.Contains("rank 2", e.Message);
        Assert.NotNull(leader.Failure);
        await Task.WhenAll(followers);
    }

    [Fact]
    public void LaunchedCpuProcessesGiveTheLogitsOfInProcessRanks()
    {
        string model = Repo.TinyModel;
        var inProcess = CliRun.Apb("logits", "--model", model, "--ids", "5,9,3,17,22,4,8,31,2,6,7,11", "--strategy", "ring", "--ranks", "2");
        Assert.True(inProcess.Code == 0, inProcess.Err);
        var (code, stdout, stderr) = ApbProcess.Run(["launch", "--nproc-per-node", "2", "--", "logits", "--model", model,
            "--ids", "5,9,3,17,22,4,8,31,2,6,7,11", "--strategy", "ring", "--device", "cpu"], TimeSpan.FromMinutes(4));
        Assert.True(code == 0, $"exit {code}: {stderr}");
        Assert.Equal(inProcess.Out, stdout); // rank 0 reports; the same top-5 and values as the in-process ranks
    }
}
