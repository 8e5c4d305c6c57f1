namespace Apb.Serving;

/// <summary>
/// Admission for generation: at most <see cref="Concurrency"/> requests run, at most <see cref="MaxWaiting"/> wait
/// behind them, and one more is refused at once with <see cref="QueueFullException"/> instead of waiting without
/// bound (a server that queues everything answers nobody in time once it falls behind). A waiter whose token is
/// cancelled (client gone) leaves the line without ever running.
/// </summary>
public sealed class RequestQueue
{
    readonly SemaphoreSlim _slots;
    int _waiting, _running;

    public RequestQueue(int concurrency, int maxWaiting)
    {
        if (concurrency < 1) throw new ApbException($"concurrency must be at least 1, got {concurrency}");
        if (maxWaiting < 0) throw new ApbException($"the queue length must be 0 or more, got {maxWaiting}");
        Concurrency = concurrency;
        MaxWaiting = maxWaiting;
        _slots = new SemaphoreSlim(concurrency, concurrency);
    }

    public int Concurrency { get; }
    public int MaxWaiting { get; }
    public int Waiting => Volatile.Read(ref _waiting);
    public int Running => Volatile.Read(ref _running);

    /// <summary>Waits for a run slot; dispose the returned slot to give it back.</summary>
    public async Task<IDisposable> EnterAsync(CancellationToken cancel = default)
    {
        cancel.ThrowIfCancellationRequested();
        if (!_slots.Wait(0))
        {
            if (Interlocked.Increment(ref _waiting) > MaxWaiting)
            {
                Interlocked.Decrement(ref _waiting);
                throw new QueueFullException(
                    $"the server is busy: {Running} request(s) running (concurrency {Concurrency}) and {MaxWaiting} waiting " +
                    "(the queue's limit); retry after a short wait, or start the server with a larger --max-queue");
            }
            try { await _slots.WaitAsync(cancel).ConfigureAwait(false); }
            finally { Interlocked.Decrement(ref _waiting); }
        }
        Interlocked.Increment(ref _running);
        return new Slot(this);
    }

    sealed class Slot(RequestQueue queue) : IDisposable
    {
        int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) != 0) return;
            Interlocked.Decrement(ref queue._running);
            queue._slots.Release();
        }
    }
}
