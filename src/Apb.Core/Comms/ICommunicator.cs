using Apb.Backends;
using Apb.Diagnostics;

namespace Apb.Comms;

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

    /// <summary>
    /// <see cref="SendRecv"/> started and left in flight: returns once the transfer is queued (on a GPU it runs on the
    /// communicator's stream, after the compute work queued before this call), so the caller can queue work that does not
    /// need it. Until <see cref="IPendingTransfer.Complete"/> returns, the caller must not write <paramref name="send"/>
    /// nor read <paramref name="recv"/>. <paramref name="label"/> (e.g. "ring step 2") names the transfer in errors.
    /// </summary>
    IPendingTransfer StartSendRecv(Tensor send, int to, Tensor recv, int from, string? label = null);

    /// <summary><see cref="AllGather(Tensor, Tensor, ReadOnlySpan{int})"/> started and left in flight, on the terms of <see cref="StartSendRecv"/>.</summary>
    IPendingTransfer StartAllGather(Tensor send, Tensor recv, ReadOnlySpan<int> rowsPerRank);

    /// <summary>Every rank's t becomes root's t.</summary>
    void Broadcast(Tensor t, int root);

    void Barrier();

    /// <summary>
    /// Ends every wait of this rank and its peers at once (theirs at their next wait, NCCL's by ncclCommAbort): after a
    /// failure on this rank, so the others report it instead of waiting for a transfer that will never come. The
    /// communicator is unusable afterwards; <paramref name="reason"/> is what the peers' errors name.
    /// </summary>
    void Abort(string reason);
}

/// <summary>A transfer in flight, from <see cref="ICommunicator.StartSendRecv"/> or <see cref="ICommunicator.StartAllGather"/>.</summary>
public interface IPendingTransfer
{
    /// <summary>
    /// Waits, bounded by the communicator's timeout, until the transfer is done, and orders the caller's later work after
    /// it (on a GPU the compute stream waits for it on the device): from then on the received data may be read and the sent
    /// buffer reused. A dead, stuck or failed peer turns into an error here naming this rank and the transfer, as the
    /// synchronous calls do. Timed as "communication". Calling it again after it returned does nothing.
    /// </summary>
    void Complete();
}

/// <summary>A transfer that was done when it started (a communicator that moves the data at once).</summary>
public sealed class CompletedTransfer : IPendingTransfer
{
    public static readonly CompletedTransfer Instance = new();
    CompletedTransfer() { }
    public void Complete() { }
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
