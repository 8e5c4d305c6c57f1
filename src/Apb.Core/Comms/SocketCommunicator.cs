using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Apb.Backends;
using Apb.Diagnostics;

namespace Apb.Comms;

/// <summary>
/// One rank's end of a group of processes connected by TCP, one connection per pair of ranks (what gloo does for
/// PyTorch): the transport of CPU ranks in separate processes, and of any backend where NCCL is not available. Tensors
/// travel as fp32 (what the CPU backend holds). Every connection has a sender thread, so sends never block the caller
/// (a ring's send-then-receive cannot deadlock), and a receiver thread that files each message in the pair's mailbox;
/// collectives are built from point-to-point messages in rank order. Messages between a pair arrive in the order they
/// were sent, and every message carries the name of the call that sent it, so ranks whose code paths diverge get an
/// error naming both calls instead of wrong data. Every wait is bounded by <see cref="Timeout"/>; a peer whose
/// connection closes makes every wait on it fail at once, naming it.
/// Frame: int32 payload bytes, int32 label bytes, label (UTF-8), payload (fp32 little endian).
/// </summary>
public sealed class SocketCommunicator : ICommunicator
{
    const int ElementBytes = sizeof(float);
    const int MaxFrame = 1 << 30;

    readonly IBackend _b;
    readonly Socket?[] _peers;
    readonly Peer?[] _links;
    readonly object _lock = new();
    volatile string? _aborted;
    bool _disposed;

    public int Rank { get; }
    public int WorldSize { get; }
    public Profile? Profile { get; set; }
    public TimeSpan Timeout { get; }

    /// <param name="peers">an open connection to every other rank, indexed by rank (this rank's entry is null)</param>
    public SocketCommunicator(IBackend backend, int rank, Socket?[] peers, TimeSpan timeout)
    {
        if (peers.Length < 1 || (uint)rank >= (uint)peers.Length || peers[rank] is not null)
            throw new ArgumentException($"rank {rank} with {peers.Length} connections (its own must be null)");
        for (int r = 0; r < peers.Length; r++)
            if (r != rank && peers[r] is null) throw new ArgumentException($"rank {rank} has no connection to rank {r}");
        _b = backend; Rank = rank; WorldSize = peers.Length; Timeout = timeout; _peers = peers;
        _links = new Peer?[peers.Length];
        for (int r = 0; r < peers.Length; r++)
        {
            if (r == rank) continue;
            peers[r]!.NoDelay = true;
            _links[r] = new Peer(this, r, peers[r]!);
        }
    }

    /// <summary>One connection: an outgoing queue drained by a sender thread, and a mailbox filled by a receiver thread.</summary>
    sealed class Peer
    {
        readonly SocketCommunicator _c;
        readonly Socket _s;
        readonly Queue<byte[]> _outgoing = new();
        bool _sending;
        readonly Queue<(string Label, float[] Data)> _mail = new();
        public readonly int Rank;
        public volatile string? Closed;   // why the connection is gone

        public Peer(SocketCommunicator c, int rank, Socket s)
        {
            _c = c; Rank = rank; _s = s;
            new Thread(SendLoop) { IsBackground = true, Name = $"apb socket send to rank {rank}" }.Start();
            new Thread(ReceiveLoop) { IsBackground = true, Name = $"apb socket receive from rank {rank}" }.Start();
        }

        public void Post(string label, ReadOnlySpan<float> data)
        {
            var l = Encoding.UTF8.GetBytes(label);
            var frame = new byte[8 + l.Length + data.Length * ElementBytes];
            BinaryPrimitives.WriteInt32LittleEndian(frame, data.Length * ElementBytes);
            BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(4), l.Length);
            l.CopyTo(frame.AsSpan(8));
            MemoryMarshal.AsBytes(data).CopyTo(frame.AsSpan(8 + l.Length));
            lock (_outgoing)
            {
                if (Closed is { } why) throw new ApbException($"rank {_c.Rank}: {label} to rank {Rank}: {why}");
                _outgoing.Enqueue(frame);
                Monitor.Pulse(_outgoing);
            }
        }

        /// <summary>The next message from this peer; it must have been sent by the same call on its side.</summary>
        public float[] Take(string label)
        {
            long start = Stopwatch.GetTimestamp();
            lock (_mail)
            {
                while (_mail.Count == 0)
                {
                    if (_c._aborted is { } reason) throw new ApbException($"rank {_c.Rank}: {label} from rank {Rank}: the group was aborted ({reason})");
                    if (Closed is { } why) throw new ApbException($"rank {_c.Rank}: {label} from rank {Rank}: {why}");
                    var left = _c.Timeout - Stopwatch.GetElapsedTime(start);
                    if (left <= TimeSpan.Zero)
                        throw new ApbException($"rank {_c.Rank}: {label} from rank {Rank} timed out after {_c.Timeout.TotalSeconds:0.#} s " +
                            $"(rank {Rank} is stuck, much slower, or its process is hung)");
                    Monitor.Wait(_mail, left < TimeSpan.FromSeconds(1) ? left : TimeSpan.FromSeconds(1));
                }
                var (got, data) = _mail.Dequeue();
                if (got != label)
                    throw new ApbException($"collective mismatch: rank {_c.Rank} called {label} while rank {Rank} called {got} (the ranks' code paths diverged)");
                return data;
            }
        }

        void SendLoop()
        {
            while (true)
            {
                byte[] frame;
                lock (_outgoing)
                {
                    _sending = false;
                    Monitor.PulseAll(_outgoing);
                    while (_outgoing.Count == 0 && Closed is null) Monitor.Wait(_outgoing);
                    if (Closed is not null) return;
                    frame = _outgoing.Dequeue();
                    _sending = true;
                }
                try { _s.Send(frame); }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    Close($"the connection to rank {Rank} broke ({e.Message})");
                    return;
                }
            }
        }

        void ReceiveLoop()
        {
            var head = new byte[8];
            while (true)
            {
                if (!Read(head)) { Close($"rank {Rank} closed its connection (its process ended or failed)"); return; }
                int bytes = BinaryPrimitives.ReadInt32LittleEndian(head), labelBytes = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(4));
                if (bytes < 0 || bytes > MaxFrame || bytes % ElementBytes != 0 || labelBytes < 0 || labelBytes > 4096)
                {
                    Close($"rank {Rank} sent a malformed frame ({bytes} bytes, label {labelBytes}): is it the same apb version?");
                    return;
                }
                var label = new byte[labelBytes];
                var data = new float[bytes / ElementBytes];
                if (!Read(label) || !Read(MemoryMarshal.AsBytes(data.AsSpan())))
                {
                    Close($"rank {Rank} closed its connection in the middle of a message");
                    return;
                }
                lock (_mail)
                {
                    _mail.Enqueue((Encoding.UTF8.GetString(label), data));
                    Monitor.PulseAll(_mail);
                }
            }
        }

        bool Read(Span<byte> buffer)
        {
            int got = 0;
            while (got < buffer.Length)
            {
                int n;
                try { n = _s.Receive(buffer[got..]); }
                catch (Exception e) when (e is SocketException or ObjectDisposedException) { return false; }
                if (n == 0) return false;
                got += n;
            }
            return true;
        }

        public void Close(string why)
        {
            lock (_outgoing) { Closed ??= why; Monitor.PulseAll(_outgoing); }
            lock (_mail) Monitor.PulseAll(_mail);
        }

        public void Wake()
        {
            lock (_mail) Monitor.PulseAll(_mail);
        }

        /// <summary>Waits (bounded) until every queued message has been written to the socket.</summary>
        public void Flush(TimeSpan limit)
        {
            var until = Stopwatch.GetTimestamp() + (long)(limit.TotalSeconds * Stopwatch.Frequency);
            lock (_outgoing)
                while ((_outgoing.Count > 0 || _sending) && Closed is null && Stopwatch.GetTimestamp() < until)
                    Monitor.Wait(_outgoing, TimeSpan.FromMilliseconds(50));
        }
    }

    float[] Snapshot(Tensor t)
    {
        var a = new float[(long)t.Rows * t.Cols];
        if (a.Length > 0) _b.Download(t, a);
        return a;
    }

    Peer Link(int peer, string what)
    {
        if ((uint)peer >= (uint)WorldSize || peer == Rank)
            throw new ArgumentOutOfRangeException(nameof(peer), $"{what}: rank {peer} is not another rank of the group of {WorldSize}");
        if (_aborted is { } reason) throw new ApbException($"rank {Rank}: {what}: the group was aborted ({reason})");
        return _links[peer]!;
    }

    void Count(long sent, long received) => Profile?.AddBytes(sent * ElementBytes, received * ElementBytes);

    public void AllGather(Tensor send, Tensor recv, ReadOnlySpan<int> rowsPerRank)
    {
        if (rowsPerRank.Length != WorldSize) throw new ArgumentException($"all-gather: {rowsPerRank.Length} row counts for {WorldSize} ranks");
        int total = 0;
        foreach (int r in rowsPerRank) total += r;
        if (send.Rows != rowsPerRank[Rank] || recv.Rows != total || recv.Cols != send.Cols)
            throw new ArgumentException($"all-gather on rank {Rank}: send {send} (plan says {rowsPerRank[Rank]} rows), recv {recv} (plan says {total} rows)");
        using var _ = Profile?.Measure("communication");
        var mine = Snapshot(send);
        for (int r = 0; r < WorldSize; r++) if (r != Rank) Link(r, "all-gather").Post("all-gather", mine);
        int row = 0;
        long received = 0;
        for (int r = 0; r < WorldSize; r++)
        {
            var part = r == Rank ? mine : Link(r, "all-gather").Take("all-gather");
            if (part.Length != rowsPerRank[r] * send.Cols)
                throw new ApbException($"all-gather: rank {r} sent {part.Length} values, rank {Rank} expected {rowsPerRank[r]} rows of {send.Cols}");
            if (part.Length > 0) _b.Upload(part, recv.RowSlice(row, rowsPerRank[r]));
            if (r != Rank) received += part.Length;
            row += rowsPerRank[r];
        }
        Count((long)mine.Length * (WorldSize - 1), received);
    }

    public void AllToAll(Tensor send, Tensor recv)
    {
        if (send.Rows % WorldSize != 0 || recv.Rows != send.Rows || recv.Cols != send.Cols)
            throw new ArgumentException($"all-to-all on rank {Rank}: send {send} and recv {recv} must be equal and split into {WorldSize} chunks of rows");
        int chunk = send.Rows / WorldSize, n = chunk * send.Cols;
        using var _ = Profile?.Measure("communication");
        var all = Snapshot(send);
        for (int r = 0; r < WorldSize; r++) if (r != Rank) Link(r, "all-to-all").Post("all-to-all", all.AsSpan(r * n, n));
        for (int r = 0; r < WorldSize; r++)
        {
            var part = r == Rank ? all.AsSpan(Rank * n, n).ToArray() : Link(r, "all-to-all").Take("all-to-all");
            if (part.Length != n) throw new ApbException($"all-to-all: rank {r} sent {part.Length} values, rank {Rank} expected {n}");
            if (n > 0) _b.Upload(part, recv.RowSlice(r * chunk, chunk));
        }
        Count((long)n * (WorldSize - 1), (long)n * (WorldSize - 1));
    }

    public void Send(Tensor t, int peer)
    {
        using var _ = Profile?.Measure("communication");
        var data = Snapshot(t);
        Link(peer, "send").Post("send/recv", data);
        Count(data.Length, 0);
    }

    public void Recv(Tensor t, int peer) => Receive(t, peer, "send/recv");

    void Receive(Tensor t, int peer, string label)
    {
        using var _ = Profile?.Measure("communication");
        var data = Link(peer, "recv").Take(label);
        if (data.Length != (long)t.Rows * t.Cols)
            throw new ApbException($"rank {Rank}: recv from rank {peer}: {data.Length} values arrived, expected {t}");
        if (data.Length > 0) _b.Upload(data, t);
        Count(0, data.Length);
    }

    public void SendRecv(Tensor send, int to, Tensor recv, int from)
    {
        Send(send, to);
        Recv(recv, from);
    }

    /// <summary>The send is queued now (its sender thread writes it), the receive is taken in Complete.</summary>
    public IPendingTransfer StartSendRecv(Tensor send, int to, Tensor recv, int from, string? label = null)
    {
        Send(send, to);
        return new PendingReceive(this, recv, from);
    }

    /// <summary>Completed at once: the all-gather's messages are taken here.</summary>
    public IPendingTransfer StartAllGather(Tensor send, Tensor recv, ReadOnlySpan<int> rowsPerRank)
    {
        AllGather(send, recv, rowsPerRank);
        return CompletedTransfer.Instance;
    }

    sealed class PendingReceive(SocketCommunicator c, Tensor recv, int from) : IPendingTransfer
    {
        bool _done;

        public void Complete()
        {
            if (_done) return;
            c.Recv(recv, from);
            _done = true;
        }
    }

    public void Broadcast(Tensor t, int root)
    {
        string label = $"broadcast from rank {root}";
        using var _ = Profile?.Measure("communication");
        if (Rank == root)
        {
            var data = Snapshot(t);
            for (int r = 0; r < WorldSize; r++) if (r != Rank) Link(r, label).Post(label, data);
            Count((long)data.Length * (WorldSize - 1), 0);
            return;
        }
        var got = Link(root, label).Take(label);
        if (got.Length != (long)t.Rows * t.Cols) throw new ApbException($"broadcast: rank {root} sent {got.Length} values, rank {Rank} expected {t}");
        if (got.Length > 0) _b.Upload(got, t);
        Count(0, got.Length);
    }

    public void Barrier()
    {
        using var _ = Profile?.Measure("communication");
        for (int r = 0; r < WorldSize; r++) if (r != Rank) Link(r, "barrier").Post("barrier", []);
        for (int r = 0; r < WorldSize; r++) if (r != Rank) Link(r, "barrier").Take("barrier");
    }

    public void Abort(string reason)
    {
        lock (_lock)
        {
            if (_aborted is not null) return;
            _aborted = reason;
        }
        // Closing the connections is what the other processes see: their waits on this rank end at once.
        foreach (var s in _peers) { try { s?.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { } }
        foreach (var l in _links) l?.Wake();
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
        }
        // What this rank already sent must still arrive: a peer may be about to read the last all-gather.
        foreach (var l in _links) l?.Flush(TimeSpan.FromSeconds(10));
        foreach (var l in _links) l?.Close("the communicator was disposed");
        // Shutdown before close: the FIN reaches the peer (and wakes this side's receive thread) at once.
        foreach (var s in _peers) { try { s?.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { } }
        foreach (var s in _peers) s?.Dispose();
    }
}
