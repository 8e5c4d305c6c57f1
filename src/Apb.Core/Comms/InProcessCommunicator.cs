using Apb.Backends;
using Apb.Diagnostics;

namespace Apb.Comms;

/// <summary>
/// A rank's end of an <see cref="InProcessGroup"/>. Works over any backend through Download/Upload; bytes are counted as
/// fp32 (what crosses between threads here), the payload a device backend would send in its own element type.
/// </summary>
public sealed class InProcessCommunicator : ICommunicator
{
    const int ElementBytes = sizeof(float);

    readonly InProcessGroup _group;
    readonly IBackend _b;

    public int Rank { get; }
    public int WorldSize => _group.WorldSize;
    public Profile? Profile { get; set; }

    internal InProcessCommunicator(InProcessGroup group, int rank, IBackend backend)
    {
        _group = group; Rank = rank; _b = backend;
    }

    float[] Snapshot(Tensor t)
    {
        var a = new float[t.Rows * t.Cols];
        if (a.Length > 0) _b.Download(t, a);
        return a;
    }

    void Count(long sentElements, long receivedElements) =>
        Profile?.AddBytes(sentElements * ElementBytes, receivedElements * ElementBytes);

    public void AllGather(Tensor send, Tensor recv, ReadOnlySpan<int> rowsPerRank)
    {
        if (rowsPerRank.Length != WorldSize)
            throw new ArgumentException($"all-gather: {rowsPerRank.Length} row counts for {WorldSize} ranks");
        int total = 0;
        foreach (int r in rowsPerRank) total += r;
        if (send.Rows != rowsPerRank[Rank] || recv.Rows != total || recv.Cols != send.Cols)
            throw new ArgumentException($"all-gather on rank {Rank}: send {send} (plan says {rowsPerRank[Rank]} rows), recv {recv} (plan says {total} rows)");
        using var _ = Profile?.Measure("communication");
        var all = _group.Exchange(Rank, "all-gather", Snapshot(send));
        int row = 0;
        long received = 0;
        for (int i = 0; i < WorldSize; i++)
        {
            var part = all[i]!;
            if (part.Length != rowsPerRank[i] * send.Cols)
                throw new ApbException($"all-gather: rank {i} sent {part.Length} values, rank {Rank} expected {rowsPerRank[i]} rows of {send.Cols}");
            if (part.Length > 0) _b.Upload(part, recv.RowSlice(row, rowsPerRank[i]));
            row += rowsPerRank[i];
            if (i != Rank) received += part.Length;
        }
        Count((long)send.Rows * send.Cols * (WorldSize - 1), received);
    }

    public void AllToAll(Tensor send, Tensor recv)
    {
        if (send.Rows % WorldSize != 0 || recv.Rows != send.Rows || recv.Cols != send.Cols)
            throw new ArgumentException($"all-to-all on rank {Rank}: send {send} and recv {recv} must be equal and split into {WorldSize} chunks of rows");
        int chunk = send.Rows / WorldSize, n = chunk * send.Cols;
        using var _ = Profile?.Measure("communication");
        var all = _group.Exchange(Rank, "all-to-all", Snapshot(send));
        for (int i = 0; i < WorldSize; i++)
        {
            var part = all[i]!;
            if (part.Length != send.Rows * send.Cols)
                throw new ApbException($"all-to-all: rank {i} sent {part.Length} values, rank {Rank} sent {send.Rows * send.Cols}");
            if (n > 0) _b.Upload(part.AsSpan(Rank * n, n), recv.RowSlice(i * chunk, chunk));
        }
        Count((long)n * (WorldSize - 1), (long)n * (WorldSize - 1));
    }

    public void Send(Tensor t, int peer)
    {
        CheckPeer(peer, "send");
        using var _ = Profile?.Measure("communication");
        _group.Post(Rank, peer, Snapshot(t));
        Count((long)t.Rows * t.Cols, 0);
    }

    public void Recv(Tensor t, int peer)
    {
        CheckPeer(peer, "recv");
        Receive(t, peer, $"recv from rank {peer}");
    }

    void Receive(Tensor t, int peer, string op)
    {
        using var _ = Profile?.Measure("communication");
        var data = _group.Take(peer, Rank, op);
        if (data.Length != t.Rows * t.Cols)
            throw new ApbException($"rank {Rank}: {op}: rank {peer} sent {data.Length} values, expected {t} = {t.Rows * t.Cols}");
        if (data.Length > 0) _b.Upload(data, t);
        Count(0, data.Length);
    }

    public void SendRecv(Tensor send, int to, Tensor recv, int from)
    {
        Send(send, to);
        Recv(recv, from);
    }

    /// <summary>
    /// The send is posted now (a snapshot: it never blocks), the receive is taken in Complete: between the two the peer's
    /// message may arrive while this rank computes, and a peer that never sends makes Complete time out naming it.
    /// </summary>
    public IPendingTransfer StartSendRecv(Tensor send, int to, Tensor recv, int from, string? label = null)
    {
        CheckPeer(to, "send");
        CheckPeer(from, "recv");
        Send(send, to);
        return new PendingReceive(this, recv, from, (label is null ? "" : label + ": ") + $"recv from rank {from}");
    }

    /// <summary>Done at once: a collective here is a rendezvous of the rank threads (Complete does nothing).</summary>
    public IPendingTransfer StartAllGather(Tensor send, Tensor recv, ReadOnlySpan<int> rowsPerRank)
    {
        AllGather(send, recv, rowsPerRank);
        return CompletedTransfer.Instance;
    }

    sealed class PendingReceive(InProcessCommunicator c, Tensor recv, int from, string op) : IPendingTransfer
    {
        bool _done;

        public void Complete()
        {
            if (_done) return;
            c.Receive(recv, from, op);
            _done = true;
        }
    }

    public void Broadcast(Tensor t, int root)
    {
        CheckPeer(root, "broadcast root");
        using var _ = Profile?.Measure("communication");
        var all = _group.Exchange(Rank, $"broadcast from rank {root}", Rank == root ? Snapshot(t) : null);
        long n = (long)t.Rows * t.Cols;
        if (Rank == root) { Count(n * (WorldSize - 1), 0); return; }
        var data = all[root]!;
        if (data.Length != n)
            throw new ApbException($"broadcast: rank {root} sent {data.Length} values, rank {Rank} expected {t}");
        if (n > 0) _b.Upload(data, t);
        Count(0, n);
    }

    public void Barrier()
    {
        using var _ = Profile?.Measure("communication");
        _group.Exchange(Rank, "barrier", null);
    }

    void CheckPeer(int peer, string what)
    {
        if ((uint)peer >= (uint)WorldSize)
            throw new ArgumentOutOfRangeException(nameof(peer), $"{what}: rank {peer} is outside the group of {WorldSize}");
    }

    public void Abort(string reason) => _group.Abort();

    public void Dispose() { }
}
