using System.Diagnostics;
using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Comms;
using Apb.Diagnostics;
using Apb.Eval;
using Apb.Strategies;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Distributed;

/// <summary>
/// Transfers left in flight (StartSendRecv / StartAllGather, completed later): the strategies give the same results
/// with overlap on and off, the transfers deliver the same bytes as the synchronous calls, and a peer that fails or
/// hangs while a transfer is in flight still ends in an error naming it. Never a hang.
/// </summary>
public class OverlapTests
{
    [Theory]
    [InlineData("llama-tiny", StrategyKind.Ring, 2, 37)]
    [InlineData("llama-tiny", StrategyKind.Ring, 4, 50)]
    [InlineData("qwen2-tiny", StrategyKind.Zigzag, 3, 61)]
    [InlineData("qwen2-tiny", StrategyKind.Zigzag, 8, 101)]
    public void RingAndZigzagGiveTheSameLogitsWithOverlapOnAndOff(string model, StrategyKind strategy, int ranks, int n)
    {
        var m = LoadModel(model);
        var context = Ids(n, n * 7 + ranks, m.Config.VocabSize);
        var query = Ids(4, n, m.Config.VocabSize);
        float[] on, off;
        using (var s = Session(m, Options(strategy, ranks) with { Overlap = true })) on = s.AllLogits(context, query);
        using (var s = Session(m, Options(strategy, ranks) with { Overlap = false })) off = s.AllLogits(context, query);
        // The same ops on the same data: only when each transfer completes differs.
        Assert.Equal(off, on);
        double err = RelativeError(off, FullLogits(m, context, query));
        Assert.True(err < 1e-5, $"{strategy} x {ranks} without overlap: relative error {err:E3} against full");
    }

    [Theory]
    [InlineData(3, 50, 0)]   // l_a 0, l_p = l_b: equals full
    [InlineData(4, 80, 8)]   // an anchor, a compressed passing block
    public void ApbGivesTheSameLogitsWithOverlapOnAndOff(int ranks, int n, int anchor)
    {
        var m = LoadModel("llama-tiny");
        var context = Ids(n, n, m.Config.VocabSize);
        var query = Ids(3, n + 1, m.Config.VocabSize);
        int lb = (n + ranks - 1) / ranks;
        var o = Options(StrategyKind.Apb, ranks) with { AnchorLength = anchor, PassingLength = anchor == 0 ? lb : 4 };
        float[] on, off;
        using (var s = Session(m, o with { Overlap = true })) on = s.AllLogits(context, query);
        using (var s = Session(m, o with { Overlap = false })) off = s.AllLogits(context, query);
        Assert.Equal(off, on);
        if (anchor == 0)
            Assert.True(RelativeError(on, FullLogits(m, context, query)) < 1e-5);
    }

    [Fact]
    public void OverlapIsOnUnlessTheEnvironmentSaysOff()
    {
        Assert.True(StrategyOptions.ParseOverlap(null));
        Assert.True(StrategyOptions.ParseOverlap("1"));
        Assert.True(StrategyOptions.ParseOverlap(""));
        Assert.False(StrategyOptions.ParseOverlap("0"));
        Assert.False(StrategyOptions.ParseOverlap(" Off "));
        Assert.False(StrategyOptions.ParseOverlap("false"));
        Assert.Equal(StrategyOptions.OverlapFromEnvironment, new StrategyOptions().Overlap);
    }

    [Fact]
    public void StartedTransfersDeliverWhatTheSynchronousCallsDeliver()
    {
        const int H = 4;
        var group = new InProcessGroup(H, TimeSpan.FromSeconds(20));
        var results = group.Run(r =>
        {
            var b = new CpuBackend();
            var c = group.Communicator(r, b);
            var syncProfile = new Profile();
            var asyncProfile = new Profile();
            int to = (r + 1) % H, from = (r + H - 1) % H;
            var send = Filled(b, 3, 5, i => 100 * r + i);

            c.Profile = syncProfile;
            var wantRing = b.Allocate(3, 5);
            c.SendRecv(send, to, wantRing, from);
            int[] rows = [1, 2, 0, 3];
            var part = Filled(b, rows[r], 2, i => 10 * r + i);
            var wantGather = b.Allocate(6, 2);
            c.AllGather(part, wantGather, rows);

            c.Profile = asyncProfile;
            var gotRing = b.Allocate(3, 5);
            var ring = c.StartSendRecv(send, to, gotRing, from, "test step 1");
            var busy = Filled(b, 2, 2, i => i); // work that does not need the transfer
            b.Copy(busy, 0, 0, busy, 1, 0, 1, 2);
            ring.Complete();
            ring.Complete(); // a second Complete does nothing
            var gotGather = b.Allocate(6, 2);
            var gather = c.StartAllGather(part, gotGather, rows);
            gather.Complete();
            return (Values(b, wantRing), Values(b, gotRing), Values(b, wantGather), Values(b, gotGather), syncProfile, asyncProfile);
        }, _ => "test");
        for (int r = 0; r < H; r++)
        {
            var (wantRing, gotRing, wantGather, gotGather, sp, ap) = results[r];
            Assert.Equal(Enumerable.Range(0, 15).Select(i => (float)(100 * ((r + H - 1) % H) + i)), gotRing);
            Assert.Equal(wantRing, gotRing);
            Assert.Equal(wantGather, gotGather);
            Assert.Equal(sp.BytesSent, ap.BytesSent);
            Assert.Equal(sp.BytesReceived, ap.BytesReceived);
            Assert.True(ap.Times.ContainsKey("communication"));
        }
    }

    /// <summary>
    /// Three ring steps on every rank of <paramref name="group"/>: step 1 completes at once, step 2 is left in flight while
    /// <paramref name="duringStep2"/> runs (the block attention's place), then completed, then step 3. The group's error.
    /// </summary>
    static Task<ApbException> RingWithFaultDuringStep2(InProcessGroup group, Action<int> duringStep2)
    {
        int h = group.WorldSize;
        return Assert.ThrowsAsync<ApbException>(() => Task.Run(() => group.Run(r =>
        {
            var b = new CpuBackend();
            var c = group.Communicator(r, b);
            var recv = b.Allocate(1, 4);
            c.StartSendRecv(Filled(b, 1, 4, _ => r), (r + 1) % h, recv, (r + h - 1) % h, "ring step 1").Complete();
            var t = c.StartSendRecv(recv, (r + 1) % h, b.Allocate(1, 4), (r + h - 1) % h, "ring step 2");
            duringStep2(r);
            t.Complete();
            c.StartSendRecv(recv, (r + 1) % h, b.Allocate(1, 4), (r + h - 1) % h, "ring step 3").Complete();
            return 0;
        }, r => $"rank {r}'s ring")));
    }

    [Fact(Timeout = 60_000)]
    public async Task APeerThatFailsWhileATransferIsInFlightIsNamed()
    {
        const int H = 4;
        // No wait times out during the test: the others can only stop because rank 2's failure aborted the group.
        var group = new InProcessGroup(H, TimeSpan.FromMinutes(10));
        // Rank 2 fails while its step-2 transfer is in flight. Rank 3 still gets rank 2's step-2 block (it was sent at
        // start), so it waits at step 3 with the others.
        var e = await RingWithFaultDuringStep2(group, r =>
        {
            if (r == 2) throw new InvalidOperationException("injected fault during the block attention");
        });
        Assert.StartsWith("rank 2 failed in rank 2's ring: InvalidOperationException: injected fault", e.Message);
        Assert.DoesNotContain("did not stop", e.Message);
    }

    [Fact(Timeout = 60_000)]
    public async Task APeerThatHangsWhileATransferIsInFlightTimesOutNamingItAndTheStep()
    {
        const int H = 3;
        var group = new InProcessGroup(H, TimeSpan.FromSeconds(1));
        var e = await RingWithFaultDuringStep2(group, r =>
        {
            // Stuck in its attention until the others have given up on it (never completes, never starts step 3);
            // then its next call sees the abort and it stops.
            if (r == 1) SpinWait.SpinUntil(() => group.Aborted, TimeSpan.FromSeconds(60));
        });
        // Rank 2 waits for rank 1's step-3 block: it names the step, the peer and the rank that never came.
        Assert.StartsWith("rank 2 failed in rank 2's ring: ring step 3: recv from rank 1 timed out after 1 s", e.Message);
        Assert.Contains("rank(s) 1 never reached a communication call", e.Message);
        Assert.DoesNotContain("did not stop", e.Message);
    }
}
