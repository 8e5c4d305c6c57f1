using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Comms;
using Apb.Diagnostics;
using Apb.Eval;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Distributed;

public class CommunicatorTests
{
    [Fact]
    public void CollectivesMoveTheRightRowsAndCountBytes()
    {
        const int H = 3;
        var group = new InProcessGroup(H, TimeSpan.FromSeconds(20));
        var results = group.Run(r =>
        {
            var b = new CpuBackend();
            var c = group.Communicator(r, b);
            c.Profile = new Profile();
            // Unequal all-gather: rank r sends r + 1 rows of value r.
            int[] rows = [1, 2, 3];
            var gathered = b.Allocate(6, 2);
            c.AllGather(Filled(b, r + 1, 2, _ => r), gathered, rows);
            // All-to-all: chunk i of rank r's send is 10 r + i.
            var recv = b.Allocate(H, 1);
            c.AllToAll(Filled(b, H, 1, i => 10 * r + i), recv);
            // Ring step.
            var got = b.Allocate(1, 1);
            c.SendRecv(Filled(b, 1, 1, _ => r), (r + 1) % H, got, (r + H - 1) % H);
            var bc = Filled(b, 1, 2, _ => r == 2 ? 42 : -1);
            c.Broadcast(bc, 2);
            c.Barrier();
            return (Values(b, gathered), Values(b, recv), Values(b, got)[0], Values(b, bc), c.Profile);
        }, _ => "test");
        for (int r = 0; r < H; r++)
        {
            var (gathered, recv, ring, bc, p) = results[r];
            Assert.Equal(new float[] { 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2 }, gathered);
            Assert.Equal(Enumerable.Range(0, H).Select(i => (float)(10 * i + r)), recv);
            Assert.Equal((r + H - 1) % H, (int)ring);
            Assert.Equal(new float[] { 42, 42 }, bc);
            // all-gather: own rows to 2 peers; all-to-all: 2 chunks out; ring: 1 value; broadcast root: 2 values to 2 peers.
            long sent = ((r + 1) * 2 * 2 + 2 + 1 + (r == 2 ? 4 : 0)) * 4L;
            Assert.Equal(sent, p.BytesSent);
            Assert.True(p.Times.ContainsKey("communication"));
        }
    }

    [Fact]
    public void MismatchedCollectivesAreReported()
    {
        var group = new InProcessGroup(2, TimeSpan.FromSeconds(20));
        var e = Assert.Throws<ApbException>(() => group.Run(r =>
        {
            var b = new CpuBackend();
            var c = group.Communicator(r, b);
            if (r == 0) c.Barrier(); else c.Broadcast(b.Allocate(1, 1), 1);
            return 0;
        }, _ => "mismatch test"));
        Assert.Contains("collective mismatch", e.Message);
    }
}
