using System.Diagnostics;
using Apb.Strategies;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Distributed;

/// <summary>A failing or stuck rank stops every rank within seconds, and the error names it. Never a hang.</summary>
public class FaultTests
{
    [Theory(Timeout = 60_000)]
    [InlineData(StrategyKind.Ring)]
    [InlineData(StrategyKind.Apb)]
    [InlineData(StrategyKind.Ulysses)]
    public async Task ARankThatThrowsStopsAllRanksAndIsNamed(StrategyKind strategy)
    {
        var m = LoadModel(strategy == StrategyKind.Ulysses ? "llama-headdim-sharded" : "embedded-random");
        // No collective times out during the test: the others can only stop because rank 2's failure aborted them.
        var o = Options(strategy, 4) with { CollectiveTimeout = TimeSpan.FromMinutes(10) };
        if (strategy == StrategyKind.Apb) o = o with { AnchorLength = 8, PassingLength = 4 };
        var backends = Enumerable.Range(0, 4).Select(_ => new FaultyBackend()).ToArray();
        backends[2].Arm(layer => { if (layer == 1) throw new InvalidOperationException("injected fault"); });
        var s = Session(m, o, r => backends[r]);
        var e = await Assert.ThrowsAsync<ApbException>(() => Task.Run(() =>
            s.Prefill(Ids(80, 1, m.Config.VocabSize), Ids(3, 2, m.Config.VocabSize))));
        Assert.StartsWith("rank 2 failed in layer 1 attention", e.Message);
        Assert.Contains("injected fault", e.Message);
        // Every other rank stopped on the abort (a rank still running after the group's stop time would be named here).
        Assert.DoesNotContain("did not stop", e.Message);
        // The session is unusable afterwards, and says why.
        var again = Assert.Throws<InvalidOperationException>(() => s.Decode(5));
        Assert.Contains("rank 2 failed", again.Message);
    }

    [Fact(Timeout = 60_000)]
    public async Task ARankThatFailsDuringDecodeIsNamed()
    {
        var m = LoadModel("embedded-random");
        var backends = Enumerable.Range(0, 3).Select(_ => new FaultyBackend()).ToArray();
        var s = Session(m, Options(StrategyKind.Zigzag, 3), r => backends[r]);
        var logits = s.Prefill(Ids(60, 1, m.Config.VocabSize), Ids(3, 2, m.Config.VocabSize));
        backends[1].Arm(layer => { if (layer == 3) throw new ApbException("out of memory (injected)"); });
        var e = await Assert.ThrowsAsync<ApbException>(() => Task.Run(() => s.Decode(Engine.Sampler.ArgMax(logits))));
        Assert.Equal("rank 1 failed in layer 3 attention (decode step 1): out of memory (injected)", e.Message);
    }

    [Fact(Timeout = 60_000)]
    public async Task AStuckRankMakesTheOthersTimeOutNamingIt()
    {
        var m = LoadModel("embedded-random");
        var timeout = TimeSpan.FromSeconds(1);
        // Rank 3 is stuck at the start of layer 0 (before its rotation, so before it posts any ring transfer: a block it
        // had sent would let rank 2 finish layer 0 and time out in layer 1 instead) until the others have all entered
        // layer 0's attention, and then for 4 timeouts more: they give up first however slowly a loaded machine
        // schedules them. It then reaches a wait, sees the abort, stops.
        int entered = 0;
        var othersIn = new ManualResetEventSlim();
        var backends = Enumerable.Range(0, 4).Select(_ => new FaultyBackend()).ToArray();
        for (int r = 0; r < 3; r++)
            backends[r].Arm(layer => { if (layer == 0 && Interlocked.Increment(ref entered) == 3) othersIn.Set(); });
        backends[3].Arm(null, beforeRotation: layer =>
        {
            if (layer != 0) return;
            othersIn.Wait(TimeSpan.FromSeconds(60));
            Thread.Sleep(4 * timeout);
        });
        var s = Session(m, Options(StrategyKind.Ring, 4) with { CollectiveTimeout = timeout }, r => backends[r]);
        var e = await Assert.ThrowsAsync<ApbException>(() => Task.Run(() =>
            s.Prefill(Ids(40, 1, m.Config.VocabSize), Ids(2, 2, m.Config.VocabSize))));
        // The ring's transfers are in flight during the block attention; the wait that gives up names the step.
        Assert.Matches("^rank [0-2] failed in layer 0 attention \\(ring prefill\\): ring step [1-3]: recv from rank [0-3] timed out after 1 s", e.Message);
        Assert.Contains("rank(s) 3 never reached a communication call", e.Message);
        Assert.DoesNotContain("did not stop", e.Message);
    }
}
