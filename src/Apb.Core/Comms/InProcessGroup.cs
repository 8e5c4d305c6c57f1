using System.Diagnostics;

namespace Apb.Comms;

/// <summary>
/// The shared state of H ranks that live as threads of one process: a rendezvous for collectives, mailboxes for
/// point-to-point messages, and an abort flag. Data crosses ranks as host fp32 snapshots taken by the sender, so a rank
/// may reuse its buffers as soon as a call returns (the semantics NCCL gives once a stream is synchronized).
/// After an abort it stays aborted until <see cref="Reset"/> (once every rank thread has ended).
/// </summary>
public sealed class InProcessGroup
{
    /// <summary>How long one wait may last before the waiting rank gives up and names the ranks it waited for.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromMinutes(5);

    /// <summary>How long, after an abort, the ranks still running are given to notice it and stop.</summary>
    public static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);

    readonly object _lock = new();
    readonly Queue<float[]>[] _mail;   // [from * H + to]

    // The collective being assembled, and the last one completed (kept until every rank has read it: the next round
    // cannot complete before each rank of this one has returned and called again).
    float[]?[] _slots;
    string?[] _ops;
    bool[] _arrived;
    int _count;
    long _generation;
    float[]?[] _doneSlots = [];
    string?[] _doneOps = [];

    // What each rank is waiting in (null: computing), and which ranks gave up: on a timeout, the ranks that are neither
    // are the ones everybody waits for, and the message names them.
    readonly string?[] _waitingIn;
    readonly bool[] _gaveUp;

    volatile bool _aborted;
    int _running;

    public int WorldSize { get; }
    public TimeSpan Timeout { get; }
    public bool Aborted => _aborted;

    /// <summary>Rank threads of <see cref="Run"/> still alive (a stuck rank keeps this above 0 after Run gave up on it).</summary>
    public int RunningRanks => Volatile.Read(ref _running);

    /// <summary>
    /// Makes an aborted group usable again: clears the abort, the half-assembled collective and the mailboxes. Only
    /// when no rank thread is alive (<see cref="RunningRanks"/> is 0): then no rank can be inside a collective.
    /// </summary>
    public void Reset()
    {
        lock (_lock)
        {
            if (_running > 0) throw new InvalidOperationException($"{_running} rank thread(s) still running: the group cannot be reset");
            _aborted = false;
            _slots = new float[]?[WorldSize]; _ops = new string?[WorldSize]; _arrived = new bool[WorldSize];
            _count = 0; _generation++;
            _doneSlots = []; _doneOps = [];
            foreach (var box in _mail) box.Clear();
            Array.Clear(_waitingIn);
            Array.Clear(_gaveUp);
        }
    }

    public InProcessGroup(int worldSize, TimeSpan? timeout = null)
    {
        if (worldSize < 1) throw new ArgumentOutOfRangeException(nameof(worldSize), $"a group needs at least one rank, got {worldSize}");
        WorldSize = worldSize;
        Timeout = timeout ?? DefaultTimeout;
        _slots = new float[]?[worldSize];
        _ops = new string?[worldSize];
        _arrived = new bool[worldSize];
        _waitingIn = new string?[worldSize];
        _gaveUp = new bool[worldSize];
        _mail = Enumerable.Range(0, worldSize * worldSize).Select(_ => new Queue<float[]>()).ToArray();
    }

    public InProcessCommunicator Communicator(int rank, Backends.IBackend backend)
    {
        if ((uint)rank >= (uint)WorldSize) throw new ArgumentOutOfRangeException(nameof(rank), $"rank {rank} of a group of {WorldSize}");
        return new InProcessCommunicator(this, rank, backend);
    }

    /// <summary>Wakes every waiting rank with <see cref="RankAbortedException"/>; later calls throw it at once.</summary>
    public void Abort()
    {
        lock (_lock)
        {
            _aborted = true;
            Monitor.PulseAll(_lock);
        }
    }

    /// <summary>Deposits this rank's contribution and returns everyone's once all ranks have called the same collective.</summary>
    internal float[]?[] Exchange(int rank, string op, float[]? contribution)
    {
        float[]?[] slots;
        string?[] ops;
        lock (_lock)
        {
            if (_aborted) throw new RankAbortedException();
            long generation = _generation;
            _slots[rank] = contribution;
            _ops[rank] = op;
            _arrived[rank] = true;
            if (++_count == WorldSize)
            {
                _doneSlots = _slots; _doneOps = _ops;
                _slots = new float[]?[WorldSize]; _ops = new string?[WorldSize]; _arrived = new bool[WorldSize];
                _count = 0;
                _generation++;
                Monitor.PulseAll(_lock);
            }
            else
                WaitLocked(rank, () => _generation != generation, op,
                    () => "rank(s) " + string.Join(", ", Enumerable.Range(0, WorldSize).Where(i => !_arrived[i])));
            slots = _doneSlots; ops = _doneOps;
        }
        for (int i = 0; i < WorldSize; i++)
            if (ops[i] != op)
                throw new ApbException($"collective mismatch: rank {rank} called {op} while rank {i} called {ops[i]} (the ranks' code paths diverged)");
        return slots;
    }

    internal void Post(int from, int to, float[] data)
    {
        lock (_lock)
        {
            if (_aborted) throw new RankAbortedException();
            _mail[from * WorldSize + to].Enqueue(data);
            Monitor.PulseAll(_lock);
        }
    }

    internal float[] Take(int from, int to, string op)
    {
        lock (_lock)
        {
            var box = _mail[from * WorldSize + to];
            WaitLocked(to, () => box.Count > 0, op, () => $"rank {from}");
            return box.Dequeue();
        }
    }

    void WaitLocked(int rank, Func<bool> done, string op, Func<string> waitingFor)
    {
        long start = Stopwatch.GetTimestamp();
        _waitingIn[rank] = op;
        try
        {
            while (!done())
            {
                if (_aborted) throw new RankAbortedException();
                var left = Timeout - Stopwatch.GetElapsedTime(start);
                if (left <= TimeSpan.Zero)
                {
                    _gaveUp[rank] = true;
                    var busy = Enumerable.Range(0, WorldSize).Where(i => _waitingIn[i] is null && !_gaveUp[i]).ToArray();
                    throw new ApbException($"{op} timed out after {Timeout.TotalSeconds:0.#} s waiting for {waitingFor()}" +
                        (busy.Length > 0 ? $"; rank(s) {string.Join(", ", busy)} never reached a communication call (stuck, or much slower than the others)" : ""));
                }
                Monitor.Wait(_lock, left);
            }
        }
        finally { _waitingIn[rank] = null; }
    }

    /// <summary>
    /// Runs body(rank) on one thread per rank and returns the results in rank order. When a rank throws, the group is
    /// aborted so the others stop at their next wait, and the error names the first rank that failed and what it was doing
    /// (<paramref name="doing"/>, read on the failing thread at the moment of failure).
    /// </summary>
    public T[] Run<T>(Func<int, T> body, Func<int, string> doing)
    {
        var results = new T[WorldSize];
        lock (_lock)
        {
            Array.Clear(_waitingIn);
            Array.Clear(_gaveUp);
        }
        (int Rank, string Doing, Exception Error)? first = null;
        var gate = new object();
        var threads = new Thread[WorldSize];
        for (int r = 0; r < WorldSize; r++)
        {
            int rank = r;
            // Dedicated threads, not pool threads: ranks block in waits, and the backend's Parallel.For needs the pool.
            threads[r] = new Thread(() =>
            {
                try
                {
                    results[rank] = body(rank);
                    lock (_lock) _waitingIn[rank] = "(finished)";
                }
                catch (RankAbortedException) { }
                catch (Exception e)
                {
                    // Backend ops run Parallel.For, which wraps what a worker threw: report the cause itself.
                    if (e is AggregateException { InnerExceptions.Count: 1 } agg) e = agg.InnerExceptions[0];
                    if (e is RankAbortedException) return;
                    string what = doing(rank);
                    lock (gate) first ??= (rank, what, e);
                    Abort();
                }
                finally { Interlocked.Decrement(ref _running); }
            }) { IsBackground = true, Name = $"apb rank {rank}" };
        }
        Interlocked.Add(ref _running, WorldSize);
        foreach (var t in threads) t.Start();

        long? abortedAt = null;
        foreach (var t in threads)
        {
            while (!t.Join(50))
            {
                if (!_aborted) continue;
                abortedAt ??= Stopwatch.GetTimestamp();
                if (Stopwatch.GetElapsedTime(abortedAt.Value) > StopTimeout) break;
            }
        }
        var stuck = Enumerable.Range(0, WorldSize).Where(i => threads[i].IsAlive).ToArray();

        if (first is { } f)
        {
            // Ranks agree on a cancellation (they stop at the same layer): that is the request's end, not a failure.
            if (f.Error is OperationCanceledException oce && stuck.Length == 0) throw new OperationCanceledException(oce.Message, oce);
            string msg = f.Error is ApbException ? f.Error.Message : $"{f.Error.GetType().Name}: {f.Error.Message}";
            if (stuck.Length > 0) msg += $" (rank(s) {string.Join(", ", stuck)} did not stop within {StopTimeout.TotalSeconds:0} s)";
            throw new ApbException($"rank {f.Rank} failed in {f.Doing}: {msg}", f.Error);
        }
        if (_aborted) throw new ApbException("the rank group was aborted");
        return results;
    }
}

/// <summary>Thrown in a rank's wait when another rank failed: a consequence, never the error to report.</summary>
public sealed class RankAbortedException() : Exception("aborted because another rank failed");
