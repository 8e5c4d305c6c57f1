using Apb.Serving;

namespace Apb.Server;

/// <summary>
/// The n choices of one request (OpenAI's "n"): n jobs on the request's one place in line, which the engine batches
/// together. Choice i samples with seed + i when the request gives a seed (the same seed would give n equal choices),
/// else each with a fresh random seed.
/// </summary>
static class ChoiceRuns
{
    public static IReadOnlyList<CompletionJob> Jobs(CompletionJob job, int n) =>
        Enumerable.Range(0, n).Select(i => i == 0 ? job
            : job with { Sampling = job.Sampling with { Seed = job.Sampling.Seed is int s ? unchecked(s + i) : null } }).ToArray();

    /// <summary>
    /// Runs every job; the slot is given back when the last one ends. A job that fails cancels its siblings (not the
    /// request: a stream still reports the failure), and every job has ended (its sequence released) before this
    /// returns or throws; the exception thrown is the failure's, not the cancellations it caused.
    /// </summary>
    public static async Task<CompletionResult[]> RunAsync(InferenceRunner runner, IDisposable slot, IReadOnlyList<CompletionJob> jobs,
        Action<int, string>? onText, CancellationToken cancel)
    {
        var shared = new SharedSlot(slot, jobs.Count);
        using var siblings = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        async Task<CompletionResult> Run(int index)
        {
            try { return await runner.RunAsync(shared, jobs[index], onText is null ? null : text => onText(index, text), siblings.Token).ConfigureAwait(false); }
            catch { siblings.Cancel(); throw; }
        }
        var runs = Enumerable.Range(0, jobs.Count).Select(Run).ToArray();
        try { return await Task.WhenAll(runs).ConfigureAwait(false); }
        catch
        {
            if (runs.FirstOrDefault(r => r.IsFaulted)?.Exception?.InnerException is { } cause)
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(cause);
            throw;
        }
    }

    /// <summary>One admission shared by n runs: released when the last of them disposes it.</summary>
    sealed class SharedSlot(IDisposable slot, int holders) : IDisposable
    {
        int _left = holders;

        public void Dispose()
        {
            if (Interlocked.Decrement(ref _left) == 0) slot.Dispose();
        }
    }
}
