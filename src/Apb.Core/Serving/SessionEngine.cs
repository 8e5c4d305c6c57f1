using System.Diagnostics;
using System.Text;
using Apb.Engine;
using Apb.Tokenization;

namespace Apb.Serving;

/// <summary>
/// One session per request from a <see cref="SessionFactory"/>, each on a thread of its own, no batching: for sessions
/// made outside the rank groups (a custom engine, test doubles). The session is disposed when its request ends
/// (finished, failed or cancelled), so its memory is freed at once; stop sequences are applied to the streamed text.
/// </summary>
public sealed class SessionEngine(SessionFactory newSession, HfTokenizer tokenizer, IReadOnlySet<int> stopTokens, int maxModelLength,
    Action<PromptTokens>? checkPrompt = null) : IGenerationEngine
{
    int _running;
    long _prompt, _generated, _steps;

    public int MaxModelLength { get; } = maxModelLength >= 2 ? maxModelLength : throw new ApbException($"max model length must be at least 2, got {maxModelLength}");

    public EngineLoad Load => new(Volatile.Read(ref _running), 0, 0, 0, Interlocked.Read(ref _prompt), Interlocked.Read(ref _generated), Interlocked.Read(ref _steps), []);

    public void Check(PromptTokens prompt, int maxNewTokens)
    {
        if ((long)prompt.Count + maxNewTokens > MaxModelLength)
            throw new InvalidRequestException($"the prompt ({prompt.Count} tokens) and max_tokens ({maxNewTokens}) need more than the {MaxModelLength} positions of this model",
                "max_tokens", "context_length_exceeded");
        try { checkPrompt?.Invoke(prompt); }
        catch (ApbException e) when (e is not InvalidRequestException) { throw new InvalidRequestException(e.Message, "messages", "invalid_prompt"); }
    }

    public async Task<CompletionResult> RunAsync(CompletionJob job, Action<string>? onText, CancellationToken cancel)
    {
        var queued = Stopwatch.GetElapsedTime(job.ArrivedAt);
        // The decode loop is seconds to minutes of work that blocks: its own thread, not one the server needs for I/O.
        return await Task.Factory.StartNew(() => Run(job, onText, queued, cancel), cancel,
            TaskCreationOptions.LongRunning | TaskCreationOptions.DenyChildAttach, TaskScheduler.Default).ConfigureAwait(false);
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

        Interlocked.Increment(ref _running);
        try
        {
            using var session = new MeteredSession(newSession(prompt, prompt.Count + job.Sampling.MaxNewTokens));
            var logprobs = job.Sampling.Logprobs is null ? null : new List<TokenLogprob>();
            string finish;
            int generated;
            try
            {
                var r = Generator.Run(session, tokenizer, prompt.Context, prompt.Query, job.Sampling, stopTokens, piece =>
                {
                    Emit(filter.Push(piece));
                    if (filter.Stopped) throw new StopSequenceReached();
                }, cancel, logprobs);
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
            Interlocked.Add(ref _prompt, prompt.Count);
            Interlocked.Add(ref _generated, generated);
            Interlocked.Add(ref _steps, session.Decodes);
            var ttft = session.FirstTokenAt == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(job.ArrivedAt, session.FirstTokenAt);
            return new CompletionResult(text.ToString(), finish, prompt.Count, generated, queued, session.PrefillTime,
                session.DecodeTime, ttft) { Logprobs = logprobs };
        }
        finally { Interlocked.Decrement(ref _running); }
    }

    public void Dispose() { }

    // Ends Generator.Run from inside its text callback, the one place a stop sequence becomes visible.
    sealed class StopSequenceReached : Exception;
}
