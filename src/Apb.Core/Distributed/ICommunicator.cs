using Apb.Backends;
using Apb.Diagnostics;

namespace Apb.Distributed;

/// <summary>
/// One rank's end of a group of <see cref="WorldSize"/> ranks, on backend tensors. Collectives are called by every rank
/// in the same order with matching shapes (as NCCL requires); each call is timed as "communication" and its bytes are
/// counted in <see cref="Profile"/>. Every wait is bounded (a timeout, and an abort when another rank fails), so a failing
/// rank never leaves the others hanging.
/// </summary>
public interface ICommunicator : IDisposable
{
    int Rank { get; }
    int WorldSize { get; }
    Profile? Profile { get; set; }

    /// <summary>
    /// recv = the ranks' send tensors stacked in rank order. Rank i contributes rowsPerRank[i] rows (counts may differ;
    /// every rank passes the same counts, known from the plan, because NCCL must size the transfer before it starts).
    /// </summary>
    void AllGather(Tensor send, Tensor recv, ReadOnlySpan<int> rowsPerRank);

    /// <summary>send and recv are [WorldSize x c, cols]: chunk i of send goes to rank i, chunk i of recv came from rank i.</summary>
    void AllToAll(Tensor send, Tensor recv);

    /// <summary>Point-to-point; may block until the peer receives, as NCCL does: pair it with the peer's Recv.</summary>
    void Send(Tensor t, int peer);
    void Recv(Tensor t, int peer);

    /// <summary>
    /// Sends to one peer while receiving from another: a ring step. One call so that NCCL can group the two and every
    /// rank can send before anyone receives without deadlock.
    /// </summary>
    void SendRecv(Tensor send, int to, Tensor recv, int from);

    /// <summary>Every rank's t becomes root's t.</summary>
    void Broadcast(Tensor t, int root);

    void Barrier();
}

public static class CommunicatorExtensions
{
    /// <summary>All-gather with the same row count on every rank.</summary>
    public static void AllGather(this ICommunicator c, Tensor send, Tensor recv)
    {
        Span<int> rows = stackalloc int[c.WorldSize];
        rows.Fill(send.Rows);
        c.AllGather(send, recv, rows);
    }
}
