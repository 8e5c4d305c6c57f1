
namespace Apb.Serving;

/// <summary>
/// Runs completions for any number of callers over one <see cref="ServedModel"/>: admission through a
/// <see cref="RequestQueue"/> (at most its concurrency inside the model's engine, a bounded line behind, 429 beyond), then
/// the model's <see cref="IGenerationEngine"/>, which batches, streams and frees each request's memory when it ends.
/// Shared by the HTTP server and the in-process IChatClient.
/// </summary>
public sealed class InferenceRunner
{
    public InferenceRunner(ServedModel model, int concurrency = 1, int maxQueue = 64)
    {
        Model = model;
        Queue = new RequestQueue(concurrency, maxQueue);
    }

    public ServedModel Model { get; }
    public RequestQueue Queue { get; }

    /// <summary>Raised after every completion that ran to its end (not for failed or cancelled ones).</summary>
    public event Action<CompletionResult>? Completed;

    /// <summary>Waits for admission, then runs; <see cref="QueueFullException"/> at once when the line is full.</summary>
    public async Task<CompletionResult> RunAsync(CompletionJob job, Action<string>? onText = null, CancellationToken cancel = default)
    {
        var slot = await Queue.EnterAsync(cancel).ConfigureAwait(false);
        return await RunAsync(slot, job, onText, cancel).ConfigureAwait(false);
    }

    /// <summary>
    /// Runs on a slot already taken from <see cref="Queue"/> (a server takes it before it commits to a streaming
    /// response, so a full queue can still be answered with an error status) and gives the slot back at the end.
    /// <paramref name="onText"/> is called on the engine's thread with each piece of new text.
    /// </summary>
    public async Task<CompletionResult> RunAsync(IDisposable slot, CompletionJob job, Action<string>? onText, CancellationToken cancel)
    {
        using (slot)
        {
            var result = await Model.Engine.RunAsync(job, onText, cancel).ConfigureAwait(false);
            Completed?.Invoke(result);
            return result;
        }
    }
}
