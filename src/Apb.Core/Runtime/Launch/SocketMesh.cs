using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Apb.Runtime.Launch;

/// <summary>
/// Connects every pair of ranks of a process group by TCP, for <see cref="Comms.SocketCommunicator"/>. Each rank listens
/// on a port of its own; over the rendezvous connections (before they become the control channel) every rank tells
/// rank 0 its port, and rank 0 answers with the table of addresses (a rank's address is the one rank 0 saw it connect
/// from; rank 0's is MASTER_ADDR). Then rank i connects to every rank below it and accepts the ones above.
/// </summary>
public static class SocketMesh
{
    const uint Hello = 0x48425041; // "APBH"

    /// <summary>Rank 0's side: <paramref name="followers"/> are the rendezvous connections, indexed by rank.</summary>
    public static Socket?[] Lead(Socket?[] followers, string masterAddr, TimeSpan timeout)
    {
        int world = followers.Length;
        using var listener = Listen(masterAddr);
        var deadline = SocketDeadline.After(timeout);
        var table = new (string Host, int Port)[world];
        table[0] = (masterAddr, Port(listener));
        for (int r = 1; r < world; r++)
        {
            var s = followers[r]!;
            var buf = new byte[4];
            if (!SocketDeadline.ReadExactly(s, buf, deadline)) throw new ApbException($"socket mesh: rank {r} did not send its data port within {timeout.TotalSeconds:0.#} s");
            table[r] = (Plain(((IPEndPoint)s.RemoteEndPoint!).Address).ToString(), BinaryPrimitives.ReadInt32LittleEndian(buf));
        }
        var encoded = Encode(table);
        for (int r = 1; r < world; r++) followers[r]!.Send(encoded);
        return Mesh(0, world, table, listener, deadline, timeout);
    }

    /// <summary>A follower's side: <paramref name="leader"/> is its rendezvous connection to rank 0.</summary>
    public static Socket?[] Follow(Socket leader, int rank, int world, TimeSpan timeout)
    {
        var deadline = SocketDeadline.After(timeout);
        var local = Plain(((IPEndPoint)leader.LocalEndPoint!).Address);
        using var listener = new TcpListener(local, 0);
        listener.Start(world);
        var port = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(port, Port(listener));
        leader.Send(port);
        var len = new byte[4];
        if (!SocketDeadline.ReadExactly(leader, len, deadline)) throw new ApbException($"socket mesh: rank {rank} got no address table from rank 0 within {timeout.TotalSeconds:0.#} s");
        var body = new byte[BinaryPrimitives.ReadInt32LittleEndian(len)];
        if (body.Length > 1 << 20 || !SocketDeadline.ReadExactly(leader, body, deadline)) throw new ApbException($"socket mesh: rank {rank}: rank 0's address table is malformed or cut short");
        var table = Decode(body, world);
        return Mesh(rank, world, table, listener, deadline, timeout);
    }

    static Socket?[] Mesh(int rank, int world, (string Host, int Port)[] table, TcpListener listener, long deadline, TimeSpan timeout)
    {
        var peers = new Socket?[world];
        try
        {
            for (int j = 0; j < rank; j++)
            {
                var c = new TcpClient { NoDelay = true };
                try
                {
                    var left = SocketDeadline.Left(deadline);
                    using var cts = new CancellationTokenSource(left > TimeSpan.Zero ? left : TimeSpan.FromMilliseconds(1));
                    c.ConnectAsync(table[j].Host, table[j].Port, cts.Token).AsTask().GetAwaiter().GetResult();
                }
                catch (Exception e) when (e is SocketException or OperationCanceledException)
                {
                    c.Dispose();
                    throw new ApbException($"socket mesh: rank {rank} cannot reach rank {j} at {table[j].Host}:{table[j].Port} ({e.Message}): is a firewall between the nodes?");
                }
                var hello = new byte[8];
                BinaryPrimitives.WriteUInt32LittleEndian(hello, Hello);
                BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(4), rank);
                c.Client.Send(hello);
                peers[j] = c.Client;
            }
            for (int k = rank + 1; k < world; k++)
            {
                if (!listener.Server.Poll((int)Math.Max(1, Math.Min(SocketDeadline.Left(deadline).TotalMicroseconds, int.MaxValue)), SelectMode.SelectRead))
                    throw new ApbException($"socket mesh: rank {rank} waited {timeout.TotalSeconds:0.#} s for ranks above it to connect; missing: " +
                        string.Join(", ", Enumerable.Range(rank + 1, world - rank - 1).Where(r => peers[r] is null)));
                var s = listener.AcceptSocket();
                var hello = new byte[8];
                if (!SocketDeadline.ReadExactly(s, hello, deadline) || BinaryPrimitives.ReadUInt32LittleEndian(hello) != Hello) { s.Dispose(); k--; continue; }
                int from = BinaryPrimitives.ReadInt32LittleEndian(hello.AsSpan(4));
                if (from <= rank || from >= world || peers[from] is not null)
                    throw new ApbException($"socket mesh: rank {rank} got a connection claiming to be rank {from}");
                s.NoDelay = true;
                peers[from] = s;
            }
            return peers;
        }
        catch
        {
            foreach (var p in peers) p?.Dispose();
            throw;
        }
    }

    static TcpListener Listen(string masterAddr)
    {
        var ip = IPAddress.TryParse(masterAddr, out var a) ? a : masterAddr == "localhost" ? IPAddress.Loopback : IPAddress.Any;
        var l = new TcpListener(ip, 0);
        l.Start(1024);
        return l;
    }

    // A dual-mode socket reports an IPv4 peer as ::ffff:a.b.c.d, which cannot be bound to.
    static IPAddress Plain(IPAddress a) => a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a;

    static int Port(TcpListener l) => ((IPEndPoint)l.LocalEndpoint).Port;

    static byte[] Encode((string Host, int Port)[] table)
    {
        using var ms = new MemoryStream();
        using var w = new BinaryWriter(ms, Encoding.UTF8);
        w.Write(0); // length, filled in below
        foreach (var (host, port) in table) { w.Write(host); w.Write(port); }
        w.Flush();
        var bytes = ms.ToArray();
        BinaryPrimitives.WriteInt32LittleEndian(bytes, bytes.Length - 4);
        return bytes;
    }

    static (string, int)[] Decode(byte[] body, int world)
    {
        using var r = new BinaryReader(new MemoryStream(body), Encoding.UTF8);
        return Enumerable.Range(0, world).Select(_ => (r.ReadString(), r.ReadInt32())).ToArray();
    }
}
