using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Apb.Engine;
using Apb.Serving;
using Microsoft.Extensions.AI;
using EngineMessage = Apb.Tokenization.ChatMessage;

namespace Apb.Extensions.AI;

/// <summary>
/// Microsoft.Extensions.AI's <see cref="IChatClient"/> over the engine in this process (no HTTP): the same admission
/// queue, prompt cut (document / question, see <see cref="PromptTokens.FromChat"/>), sampling and stop rules as
/// `apb serve`. Honors <see cref="ChatOptions"/>' MaxOutputTokens, Temperature, TopP, TopK, Seed, FrequencyPenalty,
/// PresencePenalty, StopSequences, Instructions and ModelId (a JSON ResponseFormat or tools are refused); reports usage and the finish reason; cancellation stops generation between tokens and
/// frees the request's session at once. Safe to call from many threads: requests beyond the runner's concurrency wait
/// in its queue.
/// </summary>
public sealed class ApbChatClient : IChatClient
{
    readonly InferenceRunner _runner;
    readonly int _defaultMaxOutputTokens;
    readonly ChatClientMetadata _metadata;

    /// <param name="runner">Shared with a server, if any, so both respect one concurrency limit.</param>
    /// <param name="defaultMaxOutputTokens">Used when <see cref="ChatOptions.MaxOutputTokens"/> is not set.</param>
    public ApbChatClient(InferenceRunner runner, int defaultMaxOutputTokens = 1024)
    {
        ArgumentNullException.ThrowIfNull(runner);
        ArgumentOutOfRangeException.ThrowIfLessThan(defaultMaxOutputTokens, 1);
        _runner = runner;
        _defaultMaxOutputTokens = defaultMaxOutputTokens;
        _metadata = new ChatClientMetadata("apb", null, runner.Model.Id);
    }

    /// <summary>
    /// A client with its own runner: <paramref name="concurrency"/> requests at a time (no more than the sessions the
    /// model can hold at once, e.g. the replicas of <see cref="ServedModel.Local"/>), up to <paramref name="maxQueue"/> waiting.
    /// </summary>
    public ApbChatClient(ServedModel model, int concurrency = 1, int maxQueue = 64)
        : this(new InferenceRunner(model, concurrency, maxQueue)) { }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var job = Job(messages, options);
        var r = await _runner.RunAsync(job, null, cancellationToken).ConfigureAwait(false);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, r.Text))
        {
            ResponseId = NewId(), ModelId = _runner.Model.Id, CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = Finish(r), Usage = Usage(r),
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages,
        ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var job = Job(messages, options);
        string id = NewId();
        var created = DateTimeOffset.UtcNow;
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var channel = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var run = _runner.RunAsync(job, piece => channel.Writer.TryWrite(piece), cancel.Token);
        _ = run.ContinueWith(static (_, w) => ((ChannelWriter<string>)w!).TryComplete(), channel.Writer,
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        try
        {
            await foreach (var piece in channel.Reader.ReadAllAsync(cancel.Token).ConfigureAwait(false))
                yield return new ChatResponseUpdate(ChatRole.Assistant, piece)
                {
                    ResponseId = id, MessageId = id, ModelId = _runner.Model.Id, CreatedAt = created,
                };
            var r = await run.ConfigureAwait(false);
            yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(r))])
            {
                ResponseId = id, MessageId = id, ModelId = _runner.Model.Id, CreatedAt = created, FinishReason = Finish(r),
            };
        }
        finally
        {
            // The consumer stopped early (break, cancellation, an exception): stop generating and wait until the
            // session is released, so nothing runs on after the enumeration is over.
            if (!run.IsCompleted)
            {
                cancel.Cancel();
                try { await run.ConfigureAwait(false); } catch { /* ending the run is all that is wanted here */ }
            }
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(InferenceRunner)) return _runner;
        if (serviceType == typeof(ServedModel)) return _runner.Model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    public void Dispose() { }

    CompletionJob Job(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var model = _runner.Model;
        if (options?.ModelId is { } m && m != model.Id)
            throw new ArgumentException($"ChatOptions.ModelId is '{m}' but this client runs '{model.Id}'", nameof(options));
        if (options?.Tools is { Count: > 0 })
            throw new NotSupportedException("ChatOptions.Tools: the apb chat client generates plain text and does not call tools");
        var list = Messages(messages, options?.Instructions);
        try
        {
            var prompt = PromptTokens.FromChat(model.Tokenizer, list);
            int maxNew = TokenBudget.Resolve(model.MaxPositions, prompt.Count, options?.MaxOutputTokens, _defaultMaxOutputTokens,
                nameof(ChatOptions.MaxOutputTokens), "messages");
            long? seed = options?.Seed;
            if (options?.ResponseFormat is ChatResponseFormatJson)
                throw new NotSupportedException("ChatOptions.ResponseFormat JSON needs constrained decoding, which the apb engine does not do; ask for JSON in the prompt");
            var sampling = new SamplingOptions
            {
                Temperature = options?.Temperature ?? 1.0, TopP = options?.TopP ?? 1.0, TopK = Math.Max(options?.TopK ?? 0, 0),
                Seed = seed is long s ? (int)(s ^ (s >> 32)) : null, MaxNewTokens = maxNew,
                FrequencyPenalty = options?.FrequencyPenalty ?? 0, PresencePenalty = options?.PresencePenalty ?? 0,
            };
            sampling.Validate();
            var stops = options?.StopSequences?.Where(x => !string.IsNullOrEmpty(x)).ToArray() ?? [];
            return new CompletionJob(prompt, sampling, stops);
        }
        catch (ApbException e)
        {
            throw new ArgumentException(e.Message, e is InvalidRequestException { Param: { } p } ? p : nameof(options), e);
        }
    }

    static List<EngineMessage> Messages(IEnumerable<ChatMessage> messages, string? instructions)
    {
        var list = new List<EngineMessage>();
        int i = 0;
        foreach (var m in messages)
        {
            string role = m.Role.Value;
            if (role is not ("system" or "user" or "assistant" or "tool"))
                throw new ArgumentException($"message {i} has role '{role}'; the apb chat client handles system, user, assistant and tool", nameof(messages));
            foreach (var c in m.Contents)
                if (c is not (TextContent or UsageContent or TextReasoningContent))
                    throw new NotSupportedException($"message {i} holds {c.GetType().Name}; the apb chat client handles text only");
            list.Add(new EngineMessage(role, m.Text));
            i++;
        }
        if (list.Count == 0) throw new ArgumentException("no messages: give at least one", nameof(messages));
        if (!string.IsNullOrEmpty(instructions))
        {
            // ChatOptions.Instructions is a system prompt that travels with the options; it goes before any given one.
            if (list[0].Role == "system") list[0] = list[0] with { Content = instructions + "\n" + list[0].Content };
            else list.Insert(0, new EngineMessage("system", instructions));
        }
        return list;
    }

    static ChatFinishReason Finish(CompletionResult r) => r.FinishReason == "length" ? ChatFinishReason.Length : ChatFinishReason.Stop;

    static UsageDetails Usage(CompletionResult r) =>
        new() { InputTokenCount = r.PromptTokens, OutputTokenCount = r.CompletionTokens, TotalTokenCount = r.TotalTokens };

    static string NewId() => "chatcmpl-" + Guid.NewGuid().ToString("N");
}
