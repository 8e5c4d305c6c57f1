using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Apb.Runtime.Launch;

/// <summary>
/// How rank 0 hands the communicator id (NCCL's 128-byte ncclUniqueId) to the other ranks, over TCP like torchrun's
/// MASTER_ADDR:MASTER_PORT: rank 0 listens, every other rank connects (retrying until rank 0 is up) and says who it is,
/// and once all have checked in rank 0 sends each the id. Every step has a deadline, and a timeout names the ranks that
/// never checked in, so a missing node is an error message rather than a hang. The connections stay open afterwards:
/// they are the group's control channel (<see cref="ControlChannel"/>), rank 0 to each rank.
/// Wire format (little endian): rank to 0: "APB1", int32 rank, int32 world size; 0 to rank: int32 length, id bytes.
/// </summary>
public static class Rendezvous
{
    const uint Magic = 0x31425041; // "APB1"
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Rank 0: waits for ranks 1..worldSize-1 on <paramref name="endpoint"/> and sends each <paramref name="id"/>. Returns
    /// the open connection to each rank, indexed by rank (entry 0 is null); the caller owns them.
    /// </summary>
    public static Socket?[] Serve(IPEndPoint endpoint, int worldSize, ReadOnlySpan<byte> id, TimeSpan timeout)
    {
        using var listener = new TcpListener(endpoint);
        listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        try { listener.Start(worldSize); }
        catch (SocketException e)
        {
            throw new ApbException($"rendezvous: rank 0 cannot listen on {endpoint} ({e.SocketErrorCode}: {e.Message}); pick another --master-port or check MASTER_ADDR is an address of this machine");
        }
        return Serve(listener, worldSize, id, timeout);
    }

    /// <summary>As above on a listener already started (tests bind port 0 and read the port back).</summary>
    public static Socket?[] Serve(TcpListener listener, int worldSize, ReadOnlySpan<byte> id, TimeSpan timeout)
    {
        var deadline = SocketDeadline.After(timeout);
        var peers = new Socket?[worldSize];
        int joined = 1;
        var hello = new byte[12];
        try
        {
            while (joined < worldSize)
            {
                var left = SocketDeadline.Left(deadline);
                if (left <= TimeSpan.Zero || !listener.Server.Poll((int)Math.Min(left.TotalMicroseconds, int.MaxValue), SelectMode.SelectRead))
                {
                    var missing = Enumerable.Range(1, worldSize - 1).Where(r => peers[r] is null);
                    throw new ApbException($"rendezvous: timed out after {timeout.TotalSeconds:0.#} s on {listener.LocalEndpoint} waiting for rank(s) " +
                        $"{string.Join(", ", missing)} of {worldSize} to connect (is that node started, with the same --master-addr/--master-port and --nnodes?)");
                }
                var s = listener.AcceptSocket();
                if (!SocketDeadline.ReadExactly(s, hello, deadline))
                {
                    s.Dispose();
                    continue; // a port scanner or a rank that died while connecting: keep waiting for the real one
                }
                uint magic = BinaryPrimitives.ReadUInt32LittleEndian(hello);
                int rank = BinaryPrimitives.ReadInt32LittleEndian(hello.AsSpan(4)), world = BinaryPrimitives.ReadInt32LittleEndian(hello.AsSpan(8));
                if (magic != Magic) { s.Dispose(); continue; }
                if (world != worldSize)
                    throw new ApbException($"rendezvous: rank {rank} ({s.RemoteEndPoint}) says WORLD_SIZE={world}, rank 0 has {worldSize}: every node needs the same --nnodes and --nproc-per-node");
                if (rank < 1 || rank >= worldSize)
                    throw new ApbException($"rendezvous: a rank from {s.RemoteEndPoint} says it is rank {rank}, outside 1..{worldSize - 1}: check --node-rank on that node");
                if (peers[rank] is not null)
                    throw new ApbException($"rendezvous: rank {rank} connected twice (from {peers[rank]!.RemoteEndPoint} and {s.RemoteEndPoint}): two nodes share a --node-rank");
                peers[rank] = s;
                joined++;
            }
            var msg = new byte[4 + id.Length];
            BinaryPrimitives.WriteInt32LittleEndian(msg, id.Length);
            id.CopyTo(msg.AsSpan(4));
            for (int r = 1; r < worldSize; r++)
            {
                try { peers[r]!.Send(msg); }
                catch (SocketException e) { throw new ApbException($"rendezvous: rank {r} disconnected before it got the id ({e.SocketErrorCode})"); }
            }
            var open = peers;
            peers = [];
            return open;
        }
        finally
        {
            foreach (var p in peers) p?.Dispose();
        }
    }

    /// <summary>
    /// Rank 1..: connects to rank 0 (retrying while it is not up yet), checks in and returns the id it sends, with the
    /// connection, left open (the caller owns it).
    /// </summary>
    public static (byte[] Id, Socket Connection) Join(string host, int port, int rank, int worldSize, TimeSpan timeout)
    {
        var deadline = SocketDeadline.After(timeout);
        string lastError = "";
        var hello = new byte[12];
        var len = new byte[4];
        while (true)
        {
            if (SocketDeadline.Left(deadline) <= TimeSpan.Zero)
                throw new ApbException($"rendezvous: rank {rank} could not reach rank 0 at {host}:{port} within {timeout.TotalSeconds:0.#} s ({lastError}); " +
                    "is rank 0 running, and are --master-addr/--master-port the same on every node?");
            var client = new TcpClient { NoDelay = true };
            try
            {
                var left = SocketDeadline.Left(deadline);
                using var cts = new CancellationTokenSource(left < TimeSpan.FromSeconds(5) ? left : TimeSpan.FromSeconds(5));
                client.ConnectAsync(host, port, cts.Token).AsTask().GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                client.Dispose();
                lastError = e is SocketException se ? se.SocketErrorCode.ToString() : "connect timed out";
                Thread.Sleep(100);
                continue;
            }
            var s = client.Client;
            try
            {
                BinaryPrimitives.WriteUInt32LittleEndian(hello, Magic);
                BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(4), rank);
                BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(8), worldSize);
                s.Send(hello);
                if (!SocketDeadline.ReadExactly(s, len, deadline))
                    throw new ApbException($"rendezvous: rank {rank} checked in with rank 0 at {host}:{port} but got no id within {timeout.TotalSeconds:0.#} s " +
                        "(rank 0 is still waiting for another rank, or it failed: see its output)");
                int n = BinaryPrimitives.ReadInt32LittleEndian(len);
                if (n <= 0 || n > 4096) throw new ApbException($"rendezvous: rank 0 at {host}:{port} sent a {n}-byte id: not an apb rank 0");
                var id = new byte[n];
                if (!SocketDeadline.ReadExactly(s, id, deadline)) throw new ApbException($"rendezvous: rank 0 at {host}:{port} closed the connection in the middle of the id");
                return (id, s);
            }
            catch
            {
                client.Dispose();
                throw;
            }
        }
    }
}
