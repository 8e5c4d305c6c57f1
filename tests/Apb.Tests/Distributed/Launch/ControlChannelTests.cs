using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Apb.Runtime.Launch;
using Xunit;

namespace Apb.Tests.Distributed.Launch;

/// <summary>The rendezvous connections as the control channel: commands out, failures back, dead followers noticed.</summary>
public class ControlChannelTests
{
    static (ControlChannel Leader, ControlChannel[] Followers, ConcurrentQueue<(int, string)> Lost) Connect(int world)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var joins = Enumerable.Range(1, world - 1)
            .Select(r => Task.Run(() => Rendezvous.Join("127.0.0.1", port, r, world, TimeSpan.FromSeconds(20)).Connection)).ToArray();
        var sockets = Rendezvous.Serve(listener, world, new byte[16], TimeSpan.FromSeconds(20));
        listener.Stop();
        var lost = new ConcurrentQueue<(int, string)>();
        var leader = ControlChannel.Leader(sockets, (r, why) => lost.Enqueue((r, why)));
        return (leader, joins.Select(j => ControlChannel.Follower(j.Result)).ToArray(), lost);
    }

    static void WaitFor(Func<bool> done)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!done() && DateTime.UtcNow < until) Thread.Sleep(20);
        Assert.True(done(), "timed out");
    }

    [Fact]
    public void EveryFollowerGetsEveryFrameInOrder()
    {
        var (leader, followers, lost) = Connect(3);
        leader.Send([1, 2, 3]);
        leader.Send(new byte[100_000]);
        leader.Send([]);
        foreach (var f in followers)
        {
            Assert.Equal(new byte[] { 1, 2, 3 }, f.Receive());
            Assert.Equal(100_000, f.Receive()!.Length);
            Assert.Empty(f.Receive()!);
        }
        leader.Close();
        foreach (var f in followers) f.Dispose();
        leader.Dispose();
        Assert.Empty(lost); // leaving after Close is not a failure
    }

    [Fact]
    public void AFollowersFailureAndAFollowersDeathReachTheLeaderAtOnce()
    {
        var (leader, followers, lost) = Connect(3);
        followers[1].ReportFailure("rank 2 failed in layer 3 attention (ring prefill): out of memory");
        WaitFor(() => lost.Count == 1);
        Assert.Equal((2, "rank 2 failed in layer 3 attention (ring prefill): out of memory"), lost.Single());
        followers[0].Dispose(); // rank 1's process dies: its socket closes
        WaitFor(() => lost.Count == 2);
        Assert.Contains(lost, l => l.Item1 == 1 && l.Item2.Contains("rank 1 exited"));
        leader.Dispose();
        followers[1].Dispose();
    }

    [Fact]
    public void AFollowerSeesTheLeaderGoAsTheEndOfTheStream()
    {
        var (leader, followers, _) = Connect(2);
        leader.Dispose();
        Assert.Null(followers[0].Receive());
        followers[0].Dispose();
    }
}
