using System.Diagnostics;
using Apb.Backends;
using Apb.Backends.Cuda;
using Apb.Backends.Cuda.Native;
using Apb.Checkpoints;
using Apb.Diagnostics;

namespace Apb.Comms;

/// <summary>
/// One rank's end of an NCCL communicator, one process per GPU. Transfers go device to device in the tensors' own type
/// (bf16 activations, fp32 LSE rows) on a stream of its own. Each transfer starts (on the device) after the compute work
/// queued before it and records its own completion event; completing it makes the compute stream wait (on the device)
/// for that event and waits on the host, polling the event and ncclCommGetAsyncError, so a dead or stuck peer turns into
/// an error after <see cref="Timeout"/> and an ncclCommAbort instead of a hang. The synchronous calls complete at once;
/// <see cref="StartSendRecv"/> and <see cref="StartAllGather"/> leave the transfer in flight until the caller completes
/// it, so compute queued in between overlaps it. A watchdog thread covers the calls that block inside NCCL on the host
/// (init, connection set-up).
/// </summary>
public sealed unsafe class NcclCommunicator : ICommunicator
{
    /// <summary>How much longer than <see cref="Timeout"/> a host-blocked NCCL call may take before the watchdog ends the process.</summary>
    public static readonly TimeSpan WatchdogGrace = TimeSpan.FromSeconds(30);

    /// <summary>What the watchdog does with a hung call: by default print and end the process (a thread stuck in NCCL cannot be interrupted).</summary>
    public static Action<string> OnHang { get; set; } = message =>
    {
        Console.Error.WriteLine($"error: {message}");
        Console.Error.Flush();
        Environment.Exit(1);
    };

    readonly CudaBackend _b;
    readonly nint _stream, _ready;
    // Completion events: one per transfer in flight (each keeps its own until completed), reused after; all destroyed at Dispose.
    readonly Stack<nint> _idleEvents = new();
    readonly List<nint> _events = [];
    readonly CudaTensor _scalar;
    readonly object _abortLock = new();
    nint _comm;
    volatile string? _aborted;
    // The call in progress and since when (0: none), read by the watchdog.
    volatile string? _op;
    long _opStart;
    volatile bool _disposed;

    public int Rank { get; }
    public int WorldSize { get; }
    public Profile? Profile { get; set; }
    public TimeSpan Timeout { get; }
    /// <summary>Why the communicator was aborted, or null.</summary>
    public string? AbortReason => _aborted;

    NcclCommunicator(CudaBackend backend, int rank, int worldSize, TimeSpan timeout)
    {
        _b = backend; Rank = rank; WorldSize = worldSize; Timeout = timeout;
        backend.Context.MakeCurrent();
        nint s, e1;
        Driver.Check(Driver.cuStreamCreate(&s, Driver.CU_STREAM_NON_BLOCKING), "cuStreamCreate (communication)");
        Driver.Check(Driver.cuEventCreate(&e1, Nccl.CU_EVENT_DISABLE_TIMING), "cuEventCreate");
        _stream = s; _ready = e1;
        _scalar = backend.AllocateF32(1, 1);
        new Thread(Watch) { IsBackground = true, Name = $"apb nccl watchdog rank {rank}" }.Start();
    }

    /// <summary>
    /// Joins the communicator of <paramref name="worldSize"/> ranks named by <paramref name="id"/> (rank 0 made it with
    /// <see cref="NewUniqueId"/> and every rank got it from the rendezvous). Blocks until all ranks have joined.
    /// </summary>
    public static NcclCommunicator Create(CudaBackend backend, int rank, int worldSize, NcclUniqueId id, TimeSpan timeout)
    {
        Nccl.Initialize();
        if ((uint)rank >= (uint)worldSize) throw new ApbException($"rank {rank} is outside a world of {worldSize}");
        var c = new NcclCommunicator(backend, rank, worldSize, timeout);
        try
        {
            c.Begin($"ncclCommInitRank (rank {rank} of {worldSize}, waiting for every rank to join)");
            nint comm;
            Nccl.Check(Nccl.ncclCommInitRank(&comm, worldSize, id, rank), $"ncclCommInitRank(rank {rank} of {worldSize})");
            c._comm = comm;
            c.End();
            return c;
        }
        catch
        {
            c.Dispose();
            throw;
        }
    }

    public static NcclUniqueId NewUniqueId()
    {
        Nccl.Initialize();
        NcclUniqueId id;
        Nccl.Check(Nccl.ncclGetUniqueId(&id), "ncclGetUniqueId");
        return id;
    }

    static CudaTensor C(Tensor t) => t as CudaTensor ?? throw new ArgumentException($"{t} is not a CUDA tensor: the NCCL communicator moves device memory only");

    static int DType(CudaTensor t) => t.DType == CudaDType.BF16 ? Nccl.ncclBfloat16 : Nccl.ncclFloat32;

    static void SameType(CudaTensor a, CudaTensor b, string op)
    {
        if (a.DType != b.DType) throw new ArgumentException($"{op}: {a} and {b} have different element types");
    }

    void CountBytes(long sent, long received) => Profile?.AddBytes(sent, received);

    public void AllGather(Tensor send, Tensor recv, ReadOnlySpan<int> rowsPerRank) =>
        StartAllGather(send, recv, rowsPerRank).Complete();

    public IPendingTransfer StartAllGather(Tensor send, Tensor recv, ReadOnlySpan<int> rowsPerRank)
    {
        var s = C(send); var r = C(recv);
        SameType(s, r, "all-gather");
        if (rowsPerRank.Length != WorldSize)
            throw new ArgumentException($"all-gather: {rowsPerRank.Length} row counts for {WorldSize} ranks");
        int total = 0;
        bool equal = true;
        foreach (int n in rowsPerRank) { total += n; equal &= n == rowsPerRank[0]; }
        if (s.Rows != rowsPerRank[Rank] || r.Rows != total || r.Cols != s.Cols)
            throw new ArgumentException($"all-gather on rank {Rank}: send {s} (plan says {rowsPerRank[Rank]} rows), recv {r} (plan says {total} rows)");
        int es = s.ElementSize, cols = s.Cols, dt = DType(s);
        var offsets = new long[WorldSize];
        for (int i = 1; i < WorldSize; i++) offsets[i] = offsets[i - 1] + rowsPerRank[i - 1];
        var counts = rowsPerRank.ToArray();
        using var _ = Profile?.Measure("communication");
        var pending = Enqueue("all-gather", () =>
        {
            if (equal)
            {
                if (counts[0] > 0) Call(Nccl.ncclAllGather(s.Ptr, r.Ptr, (nuint)((long)counts[0] * cols), dt, _comm, _stream), "ncclAllGather");
                return;
            }
            // Unequal blocks (APB's anchor rows, a ragged last block): NCCL's all-gather wants equal counts, so each rank
            // sends its block to every peer and receives theirs, in one group (NCCL schedules the pairs without deadlock).
            Group(() =>
            {
                for (int i = 0; i < WorldSize; i++)
                {
                    ulong at = r.Ptr + (ulong)(offsets[i] * cols * es);
                    if (i == Rank)
                    {
                        if (counts[i] > 0) Driver.Check(Driver.cuMemcpyDtoDAsync(at, s.Ptr, (nuint)((long)counts[i] * cols * es), _stream), "cuMemcpyDtoDAsync (all-gather, own block)");
                        continue;
                    }
                    if (counts[Rank] > 0) Call(Nccl.ncclSend(s.Ptr, (nuint)((long)counts[Rank] * cols), dt, i, _comm, _stream), $"ncclSend(to rank {i})");
                    if (counts[i] > 0) Call(Nccl.ncclRecv(at, (nuint)((long)counts[i] * cols), dt, i, _comm, _stream), $"ncclRecv(from rank {i})");
                }
            });
        });
        CountBytes((long)counts[Rank] * cols * es * (WorldSize - 1), ((long)total - counts[Rank]) * cols * es);
        return pending;
    }

    public void AllToAll(Tensor send, Tensor recv)
    {
        var s = C(send); var r = C(recv);
        SameType(s, r, "all-to-all");
        if (s.Rows % WorldSize != 0 || r.Rows != s.Rows || r.Cols != s.Cols)
            throw new ArgumentException($"all-to-all on rank {Rank}: send {s} and recv {r} must be equal and split into {WorldSize} chunks of rows");
        long n = (long)s.Rows / WorldSize * s.Cols;
        ulong chunkBytes = (ulong)(n * s.ElementSize);
        int dt = DType(s);
        using var _ = Profile?.Measure("communication");
        Run("all-to-all", () =>
        {
            if (n == 0) return;
            Group(() =>
            {
                for (int i = 0; i < WorldSize; i++)
                {
                    ulong from = s.Ptr + (ulong)i * chunkBytes, to = r.Ptr + (ulong)i * chunkBytes;
                    if (i == Rank)
                    {
                        Driver.Check(Driver.cuMemcpyDtoDAsync(to, from, (nuint)chunkBytes, _stream), "cuMemcpyDtoDAsync (all-to-all, own chunk)");
                        continue;
                    }
                    Call(Nccl.ncclSend(from, (nuint)n, dt, i, _comm, _stream), $"ncclSend(to rank {i})");
                    Call(Nccl.ncclRecv(to, (nuint)n, dt, i, _comm, _stream), $"ncclRecv(from rank {i})");
                }
            });
        });
        CountBytes(n * s.ElementSize * (WorldSize - 1), n * s.ElementSize * (WorldSize - 1));
    }

    public void Send(Tensor t, int peer)
    {
        var c = C(t);
        CheckPeer(peer, "send", self: false);
        long n = (long)c.Rows * c.Cols;
        using var _ = Profile?.Measure("communication");
        Run($"send to rank {peer}", () =>
        {
            if (n > 0) Call(Nccl.ncclSend(c.Ptr, (nuint)n, DType(c), peer, _comm, _stream), $"ncclSend(to rank {peer})");
        });
        CountBytes(n * c.ElementSize, 0);
    }

    public void Recv(Tensor t, int peer)
    {
        var c = C(t);
        CheckPeer(peer, "recv", self: false);
        long n = (long)c.Rows * c.Cols;
        using var _ = Profile?.Measure("communication");
        Run($"recv from rank {peer}", () =>
        {
            if (n > 0) Call(Nccl.ncclRecv(c.Ptr, (nuint)n, DType(c), peer, _comm, _stream), $"ncclRecv(from rank {peer})");
        });
        CountBytes(0, n * c.ElementSize);
    }

    public void SendRecv(Tensor send, int to, Tensor recv, int from) => StartSendRecv(send, to, recv, from).Complete();

    public IPendingTransfer StartSendRecv(Tensor send, int to, Tensor recv, int from, string? label = null)
    {
        var s = C(send); var r = C(recv);
        SameType(s, r, "send-recv");
        CheckPeer(to, "send", self: true);
        CheckPeer(from, "recv", self: true);
        long ns = (long)s.Rows * s.Cols, nr = (long)r.Rows * r.Cols;
        using var _ = Profile?.Measure("communication");
        var pending = Enqueue((label is null ? "" : label + ": ") + $"send to rank {to} / recv from rank {from}", () =>
        {
            if (to == Rank && from == Rank)
            {
                if (ns != nr) throw new ArgumentException($"send-recv to self: {s} and {r} differ in size");
                if (ns > 0) Driver.Check(Driver.cuMemcpyDtoDAsync(r.Ptr, s.Ptr, (nuint)(ns * s.ElementSize), _stream), "cuMemcpyDtoDAsync (send-recv to self)");
                return;
            }
            Group(() =>
            {
                if (ns > 0) Call(Nccl.ncclSend(s.Ptr, (nuint)ns, DType(s), to, _comm, _stream), $"ncclSend(to rank {to})");
                if (nr > 0) Call(Nccl.ncclRecv(r.Ptr, (nuint)nr, DType(r), from, _comm, _stream), $"ncclRecv(from rank {from})");
            });
        });
        CountBytes(ns * s.ElementSize, nr * r.ElementSize);
        return pending;
    }

    public void Broadcast(Tensor t, int root)
    {
        var c = C(t);
        CheckPeer(root, "broadcast root", self: true);
        long n = (long)c.Rows * c.Cols;
        using var _ = Profile?.Measure("communication");
        Run($"broadcast from rank {root}", () =>
        {
            if (n > 0) Call(Nccl.ncclBroadcast(c.Ptr, c.Ptr, (nuint)n, DType(c), root, _comm, _stream), "ncclBroadcast");
        });
        if (Rank == root) CountBytes(n * c.ElementSize * (WorldSize - 1), 0);
        else CountBytes(0, n * c.ElementSize);
    }

    /// <summary>A one-float all-reduce: returns once every rank has reached it (NCCL has no barrier of its own).</summary>
    public void Barrier()
    {
        using var _ = Profile?.Measure("communication");
        Run("barrier", () => Call(Nccl.ncclAllReduce(_scalar.Ptr, _scalar.Ptr, 1, Nccl.ncclFloat32, Nccl.ncclSum, _comm, _stream), "ncclAllReduce (barrier)"));
    }

    void CheckPeer(int peer, string what, bool self)
    {
        if ((uint)peer >= (uint)WorldSize)
            throw new ArgumentOutOfRangeException(nameof(peer), $"{what}: rank {peer} is outside the group of {WorldSize}");
        if (!self && peer == Rank) throw new ArgumentException($"{what}: rank {Rank} cannot pair a lone send or recv with itself");
    }

    void Call(int rc, string call)
    {
        if (rc != Nccl.ncclSuccess && rc != Nccl.ncclInProgress) Nccl.Check(rc, call, _comm);
    }

    void Group(Action body)
    {
        Call(Nccl.ncclGroupStart(), "ncclGroupStart");
        try { body(); }
        finally { Call(Nccl.ncclGroupEnd(), "ncclGroupEnd"); }
    }

    /// <summary>A synchronous call: the transfer enqueued and completed at once.</summary>
    void Run(string op, Action enqueue) => Finish(Enqueue(op, enqueue));

    /// <summary>A transfer in flight: its completion event on the communication stream, until <see cref="Complete"/>.</summary>
    sealed class Pending(NcclCommunicator owner, string op, nint done) : IPendingTransfer
    {
        public readonly string Op = op;
        /// <summary>The completion event; 0 once completed (the event went back to the pool).</summary>
        public nint Done = done;

        public void Complete()
        {
            if (Done == 0) return;
            using var _ = owner.Profile?.Measure("communication");
            owner.Finish(this);
        }
    }

    nint RentEvent()
    {
        if (_idleEvents.TryPop(out var e)) return e;
        nint ev;
        Driver.Check(Driver.cuEventCreate(&ev, Nccl.CU_EVENT_DISABLE_TIMING), "cuEventCreate (transfer done)");
        _events.Add(ev);
        return ev;
    }

    /// <summary>
    /// Orders the transfer after the compute work already queued (event on the compute stream, waited for by the
    /// communication stream), enqueues it and records its completion event on the communication stream. Returns without
    /// waiting for it. A failure here aborts the communicator.
    /// </summary>
    Pending Enqueue(string op, Action enqueue)
    {
        if (_aborted is { } why) throw new ApbException($"rank {Rank}: {op}: the NCCL communicator was aborted earlier ({why})");
        ObjectDisposedException.ThrowIf(_disposed, this);
        _b.Context.MakeCurrent();
        nint compute = _b.Context.Stream;
        Begin(op);
        try
        {
            nint done = RentEvent();
            Driver.Check(Driver.cuEventRecord(_ready, compute), "cuEventRecord");
            // The wait captures the event's state now, so _ready can be recorded again by the next transfer.
            Driver.Check(Nccl.cuStreamWaitEvent(_stream, _ready, 0), "cuStreamWaitEvent (communication after compute)");
            enqueue();
            Driver.Check(Driver.cuEventRecord(done, _stream), "cuEventRecord (transfer done)");
            return new Pending(this, op, done);
        }
        catch (Exception e) when (e is not RankAbortedException && _aborted is null)
        {
            Abort($"{op} failed: {e.Message}");
            throw;
        }
        finally { End(); }
    }

    /// <summary>
    /// Orders later compute after the transfer (the compute stream waits for its event on the device), then waits on the
    /// host, bounded: the event is polled together with NCCL's asynchronous error. A failure aborts the communicator.
    /// </summary>
    void Finish(Pending p)
    {
        if (p.Done == 0) return;
        if (_aborted is { } why) throw new ApbException($"rank {Rank}: {p.Op}: the NCCL communicator was aborted earlier ({why})");
        ObjectDisposedException.ThrowIf(_disposed, this);
        _b.Context.MakeCurrent();
        Begin(p.Op);
        try
        {
            Driver.Check(Nccl.cuStreamWaitEvent(_b.Context.Stream, p.Done, 0), "cuStreamWaitEvent (compute after communication)");
            Wait(p.Op, p.Done);
            _idleEvents.Push(p.Done);
            p.Done = 0;
        }
        catch (Exception e) when (e is not RankAbortedException && _aborted is null)
        {
            Abort($"{p.Op} failed: {e.Message}");
            throw;
        }
        finally { End(); }
    }

    void Wait(string op, nint done)
    {
        long start = Stopwatch.GetTimestamp();
        for (int spin = 0; ; spin++)
        {
            int rc = Nccl.cuEventQuery(done);
            if (rc == Driver.CUDA_SUCCESS) return;
            if (rc != Nccl.CUDA_ERROR_NOT_READY) Driver.Check(rc, $"{op}: the transfer or an earlier kernel failed");
            int async;
            Nccl.Check(Nccl.ncclCommGetAsyncError(_comm, &async), "ncclCommGetAsyncError", _comm);
            if (async != Nccl.ncclSuccess && async != Nccl.ncclInProgress)
            {
                string msg = $"rank {Rank}: {op}: NCCL reported an asynchronous error: {Nccl.ErrorText(async, _comm)} (a peer rank died or its network/NVLink path failed)";
                Abort(msg);
                throw new NcclException(msg + "; the communicator was aborted (ncclCommAbort)");
            }
            var waited = Stopwatch.GetElapsedTime(start);
            if (waited > Timeout)
            {
                string msg = $"rank {Rank}: {op} timed out after {Timeout.TotalSeconds:0.#} s: another rank died, hangs, or called a different collective (the ranks' code paths diverged)";
                Abort(msg);
                throw new ApbException(msg + "; the communicator was aborted (ncclCommAbort)");
            }
            // Small transfers finish in microseconds: spin first, then yield, then sleep once the wait is clearly long.
            if (spin < 2000) Thread.SpinWait(20);
            else if (waited < TimeSpan.FromMilliseconds(20)) Thread.Yield();
            else Thread.Sleep(1);
        }
    }

    /// <summary>Aborts the communicator (ncclCommAbort): pending and later calls on this rank fail at once. Idempotent.</summary>
    public void Abort(string reason)
    {
        lock (_abortLock)
        {
            if (_aborted != null) return;
            _aborted = reason;
            if (_comm != 0)
            {
                Nccl.ncclCommAbort(_comm);
                _comm = 0;
            }
        }
    }

    void Begin(string op)
    {
        Volatile.Write(ref _opStart, Stopwatch.GetTimestamp());
        _op = op;
    }

    void End()
    {
        _op = null;
        Volatile.Write(ref _opStart, 0);
    }

    void Watch()
    {
        while (!_disposed)
        {
            Thread.Sleep(500);
            long start = Volatile.Read(ref _opStart);
            if (start == 0 || _op is not { } op) continue;
            if (Stopwatch.GetElapsedTime(start) <= Timeout + WatchdogGrace) continue;
            // The calling thread is stuck inside NCCL on the host (the bounded poll would have returned otherwise).
            string msg = $"rank {Rank}: {op} has not returned after {(Timeout + WatchdogGrace).TotalSeconds:0} s (stuck inside NCCL on the host): " +
                         "aborting the communicator (ncclCommAbort) and stopping this process";
            try { Abort(msg); } catch { }
            OnHang(msg);
            return;
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        lock (_abortLock)
        {
            if (_comm != 0 && _aborted is null)
            {
                // ncclCommDestroy flushes pending work and can wait on peers; bound it, and abort instead when it hangs.
                nint comm = _comm;
                var t = new Thread(() => Nccl.ncclCommDestroy(comm)) { IsBackground = true };
                t.Start();
                if (!t.Join(TimeSpan.FromSeconds(10))) Nccl.ncclCommAbort(comm);
            }
            _comm = 0;
        }
        try
        {
            _b.Context.MakeCurrent();
            _scalar.Dispose();
            Driver.cuEventDestroy(_ready);
            foreach (var e in _events) Driver.cuEventDestroy(e);
            _events.Clear();
            _idleEvents.Clear();
            Driver.cuStreamDestroy(_stream);
        }
        catch (ObjectDisposedException) { }
    }
}
