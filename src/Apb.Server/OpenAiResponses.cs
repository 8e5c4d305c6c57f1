using System.Text.Json;
using System.Text.Json.Serialization;
using Apb.Serving;

namespace Apb.Server;

// Response bodies in OpenAI's shapes. Nulls are left out except where OpenAI always writes the key
// (finish_reason and logprobs in choices, param and code in errors): some clients index those keys directly.

public sealed record Usage(int PromptTokens, int CompletionTokens, int TotalTokens)
{
    /// <summary>The choices of one request share its prompt: counted once, their completions summed.</summary>
    public static Usage Of(IReadOnlyList<CompletionResult> choices)
    {
        int prompt = choices[0].PromptTokens, completion = choices.Sum(r => r.CompletionTokens);
        return new(prompt, completion, prompt + completion);
    }
}

public sealed record ChatCompletionResponse(
    string Id, string Object, long Created, string Model, IReadOnlyList<ChatChoice> Choices, Usage Usage)
{
    /// <summary>Only when the request asked ("apb_timings": true).</summary>
    public CompletionTimings? Timings { get; init; }
}

public sealed record ChatChoice(
    int Index, AssistantMessage Message,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] ChatLogprobs? Logprobs,
    string FinishReason);

public sealed record AssistantMessage(string Role, string Content);

/// <summary>Chat logprobs: one entry per generated token, with its top alternatives.</summary>
public sealed record ChatLogprobs(IReadOnlyList<ChatTokenLogprob> Content);

public sealed record ChatTokenLogprob(string Token, float Logprob, IReadOnlyList<int> Bytes, IReadOnlyList<ChatTopLogprob> TopLogprobs);

public sealed record ChatTopLogprob(string Token, float Logprob, IReadOnlyList<int> Bytes);

public sealed record ChatCompletionChunk(
    string Id, string Object, long Created, string Model, IReadOnlyList<ChatChunkChoice> Choices, Usage? Usage)
{
    /// <summary>On the chunk with finish_reason, only when the request asked ("apb_timings": true).</summary>
    public CompletionTimings? Timings { get; init; }
}

public sealed record ChatChunkChoice(
    int Index, ChatDelta Delta,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] ChatLogprobs? Logprobs,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason);

public sealed record ChatDelta(string? Role, string? Content);

/// <summary>Both the whole answer and each streamed chunk of /v1/completions ("object": "text_completion").</summary>
public sealed record TextCompletionResponse(
    string Id, string Object, long Created, string Model, IReadOnlyList<TextChoice> Choices, Usage? Usage)
{
    /// <summary>In the answer, or on the chunk with choice 0's finish_reason, only when the request asked ("apb_timings": true).</summary>
    public CompletionTimings? Timings { get; init; }
}

public sealed record TextChoice(
    string Text, int Index,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] TextLogprobs? Logprobs,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason);

/// <summary>The legacy completions' logprobs: parallel lists per token, the alternatives as {token: logprob}.</summary>
public sealed record TextLogprobs(IReadOnlyList<string> Tokens, IReadOnlyList<float> TokenLogprobs,
    IReadOnlyList<Dictionary<string, float>> TopLogprobs, IReadOnlyList<int> TextOffset);

public sealed record ModelList(string Object, IReadOnlyList<ModelCard> Data);

/// <summary>
/// max_model_len is not OpenAI's; vLLM reports it the same way and clients use it to size prompts. strategy (ours): how
/// requests run, e.g. "apb (query-aware scorer) over 4 rank(s)", where the server was told.
/// </summary>
public sealed record ModelCard(string Id, string Object, long Created, string OwnedBy, int MaxModelLen)
{
    public string? Strategy { get; init; }
}

public sealed record ErrorResponse(ErrorBody Error);

public sealed record ErrorBody(
    string Message, string Type,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Param,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Code);

public sealed record HealthResponse(string Status, string Model, int Running, int Waiting);
