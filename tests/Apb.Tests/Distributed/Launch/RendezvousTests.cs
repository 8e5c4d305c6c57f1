using System.Net;
using System.Net.Sockets;
using Apb.Runtime.Launch;
using Xunit;

namespace Apb.Tests.Distributed.Launch;

public class RendezvousTests
{
    static TcpListener Listen()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return l;
    }

    static int Port(TcpListener l) => ((IPEndPoint)l.LocalEndpoint).Port;

    /// <summary>Runs f on its own thread (ranks block in sockets); the returned function joins it and rethrows.</summary>
    static Func<T> Start<T>(Func<T> f)
    {
        T result = default!;
        Exception? error = null;
        var t = new Thread(() => { try { result = f(); } catch (Exception e) { error = e; } }) { IsBackground = true };
        t.Start();
        return () =>
        {
            Assert.True(t.Join(TimeSpan.FromSeconds(30)), "the rank's thread did not finish");
            if (error != null) throw error;
            return result;
        };
    }

    [Fact]
    public void EveryRankGetsRankZerosId()
    {
        const int N = 4;
        var id = Enumerable.Range(0, 128).Select(i => (byte)(i * 7 + 1)).ToArray();
        using var listener = Listen();
        int port = Port(listener);
        var joins = Enumerable.Range(1, N - 1)
            .Select(r => Start(() => Rendezvous.Join("127.0.0.1", port, r, N, TimeSpan.FromSeconds(20)))).ToArray();
        var followers = Rendezvous.Serve(listener, N, id, TimeSpan.FromSeconds(20));
        Assert.Null(followers[0]);
        Assert.All(followers.Skip(1), f => Assert.True(f!.Connected)); // kept open: the group's control channel
        foreach (var j in joins)
        {
            var (got, connection) = j();
            Assert.Equal(id, got);
            connection.Dispose();
        }
        foreach (var f in followers) f?.Dispose();
    }

    [Fact]
    public void RanksThatStartBeforeRankZeroRetryUntilItListens()
    {
        int port = Launcher.FreePort();
        var id = new byte[128];
        id[5] = 9;
        var join = Start(() => Rendezvous.Join("127.0.0.1", port, 1, 2, TimeSpan.FromSeconds(20)));
        Thread.Sleep(300);
        var followers = Rendezvous.Serve(new IPEndPoint(IPAddress.Loopback, port), 2, id, TimeSpan.FromSeconds(20));
        var (got, connection) = join();
        Assert.Equal(id, got);
        connection.Dispose();
        foreach (var f in followers) f?.Dispose();
    }

    [Fact]
    public void RankZeroNamesTheRankThatNeverConnected()
    {
        using var listener = Listen();
        int port = Port(listener);
        var join = Start(() => Rendezvous.Join("127.0.0.1", port, 1, 3, TimeSpan.FromSeconds(20)));
        var started = DateTime.UtcNow;
        var e = Assert.Throws<ApbException>(() => Rendezvous.Serve(listener, 3, new byte[128], TimeSpan.FromSeconds(1)));
        Assert.Contains("rank(s) 2 of 3", e.Message);
        Assert.DoesNotContain("rank(s) 1", e.Message);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(10));
        // Rank 1 hears nothing back and fails too, rather than waiting forever.
        var je = Assert.Throws<ApbException>(() => join());
        Assert.Contains("got no id", je.Message);
    }

    [Fact]
    public void AJoiningRankWithoutRankZeroTimesOutNamingTheAddress()
    {
        int port = Launcher.FreePort();
        var e = Assert.Throws<ApbException>(() => Rendezvous.Join("127.0.0.1", port, 1, 2, TimeSpan.FromSeconds(1)));
        Assert.Contains($"could not reach rank 0 at 127.0.0.1:{port}", e.Message);
    }

    [Fact]
    public void MismatchedWorldSizesAreRefused()
    {
        using var listener = Listen();
        int port = Port(listener);
        _ = Start(() => { try { Rendezvous.Join("127.0.0.1", port, 1, 3, TimeSpan.FromSeconds(5)).Connection.Dispose(); } catch (ApbException) { } return 0; });
        var e = Assert.Throws<ApbException>(() => Rendezvous.Serve(listener, 2, new byte[128], TimeSpan.FromSeconds(10)));
        Assert.Contains("WORLD_SIZE=3", e.Message);
    }
}
