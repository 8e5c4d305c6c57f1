namespace Apb.Serving;

/// <summary>
/// Admission for generation: at most <see cref="Concurrency"/> requests run, at most <see cref="MaxWaiting"/> wait
/// behind them, and one more is refused at once with <see cref="QueueFullException"/> instead of waiting without
/// bound (a server that queues everything answers nobody in time once it falls behind). A request takes its place in
/// line with <see cref="Admit"/> before it reads its body or tokenizes its prompt, so a full server refuses a large
/// request without holding its text in memory, and the memory held by requests being read is bounded by the line's
/// length. A waiter whose token is cancelled (client gone) leaves the line without ever running.
/// </summary>
public sealed class RequestQueue
{
    readonly SemaphoreSlim _slots;
    int _admitted, _running;

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
    /// <summary>Requests admitted but not running: reading their body, tokenizing, or waiting for a run slot.</summary>
    public int Waiting => Math.Max(Volatile.Read(ref _admitted) - Volatile.Read(ref _running), 0);
    public int Running => Volatile.Read(ref _running);

    /// <summary>
    /// Takes a place in line now, or throws <see cref="QueueFullException"/> when every run slot and every place is
    /// taken. Dispose the admission to give the place (and the run slot, once entered) back.
    /// </summary>
    public Admission Admit()
    {
        if (Interlocked.Increment(ref _admitted) > Concurrency + MaxWaiting)
        {
            Interlocked.Decrement(ref _admitted);
            throw new QueueFullException(
                $"the server is busy: {Running} request(s) running (concurrency {Concurrency}) and {MaxWaiting} waiting " +
                "(the queue's limit); retry after a short wait, or start the server with a larger --max-queue");
        }
        return new Admission(this);
    }

    /// <summary>Admits and waits for a run slot; dispose the returned slot to give it back.</summary>
    public async Task<IDisposable> EnterAsync(CancellationToken cancel = default)
    {
        cancel.ThrowIfCancellationRequested();
        var admission = Admit();
        try { await admission.EnterAsync(cancel).ConfigureAwait(false); }
        catch { admission.Dispose(); throw; }
        return admission;
    }

    /// <summary>A place in line, then a run slot after <see cref="EnterAsync"/>. Disposing it twice is harmless.</summary>
    public sealed class Admission : IDisposable
    {
        readonly RequestQueue _queue;
        int _state; // 0 admitted, 1 running, 2 released

        internal Admission(RequestQueue queue) => _queue = queue;

        /// <summary>Waits for a run slot (at once when one is free).</summary>
        public async Task EnterAsync(CancellationToken cancel = default)
        {
            if (Volatile.Read(ref _state) != 0) throw new InvalidOperationException("this admission already entered or was released");
            await _queue._slots.WaitAsync(cancel).ConfigureAwait(false);
            if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
            {
                _queue._slots.Release(); // released while waiting
                throw new ObjectDisposedException(nameof(Admission));
            }
            Interlocked.Increment(ref _queue._running);
        }

        public void Dispose()
        {
            int was = Interlocked.Exchange(ref _state, 2);
            if (was == 2) return;
            if (was == 1)
            {
                Interlocked.Decrement(ref _queue._running);
                _queue._slots.Release();
            }
            Interlocked.Decrement(ref _queue._admitted);
        }
    }
}
