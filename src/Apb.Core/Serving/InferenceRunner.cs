using System.Diagnostics;
using System.Text;
using Apb.Engine;

namespace Apb.Serving;

/// <summary>
/// Runs completions for any number of callers over one <see cref="ServedModel"/>: admission through a
/// <see cref="RequestQueue"/>, one session per request made by the model's factory and disposed when the request ends
/// (finished, failed or cancelled, so its KV cache is freed at once), the decode loop on a thread of its own, and
/// stop sequences applied to the streamed text. Shared by the HTTP server and the in-process IChatClient.
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
    /// <paramref name="onText"/> is called on the generation thread with each piece of new text.
    /// </summary>
    public async Task<CompletionResult> RunAsync(IDisposable slot, CompletionJob job, Action<string>? onText, CancellationToken cancel)
    {
        using (slot)
        {
            var queued = Stopwatch.GetElapsedTime(job.ArrivedAt);
            // The decode loop is seconds to minutes of CPU work that blocks: give it its own thread rather than a pool
            // thread the server needs for I/O.
            var result = await Task.Factory.StartNew(() => Run(job, onText, queued, cancel), cancel,
                TaskCreationOptions.LongRunning | TaskCreationOptions.DenyChildAttach, TaskScheduler.Default).ConfigureAwait(false);
            Completed?.Invoke(result);
            return result;
        }
    }

    CompletionResult Run(CompletionJob job, Action<string>? onText, TimeSpan queued, CancellationToken cancel)
    {
        var prompt = job.Prompt;
        var filter = new StopSequenceFilter(job.StopSequences);
        var text = new StringBuilder();
        void Emit(string piece)
        {
            if (piece.Length == 0) return;
            text.Append(piece);
            onText?.Invoke(piece);
        }

        using var session = new MeteredSession(Model.NewSession(prompt, prompt.Count + job.Sampling.MaxNewTokens));
        string finish;
        int generated;
        try
        {
            var r = Generator.Run(session, Model.Tokenizer, prompt.Context, prompt.Query, job.Sampling, Model.StopTokens, piece =>
            {
                Emit(filter.Push(piece));
                if (filter.Stopped) throw new StopSequenceReached();
            }, cancel);
            Emit(filter.Flush());
            finish = r.FinishReason;
            generated = r.OutputIds.Count;
        }
        catch (StopSequenceReached)
        {
            finish = "stop";
            // The token that completed the stop sequence was sampled but not yet fed back.
            generated = Math.Min(session.Decodes + 1, job.Sampling.MaxNewTokens);
        }
        var ttft = session.FirstTokenAt == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(job.ArrivedAt, session.FirstTokenAt);
        return new CompletionResult(text.ToString(), finish, prompt.Count, generated, queued, session.PrefillTime,
            session.DecodeTime, ttft);
    }

    // Ends Generator.Run from inside its text callback, the one place a stop sequence becomes visible.
    sealed class StopSequenceReached : Exception;
}
