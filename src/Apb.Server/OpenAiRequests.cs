using System.Text.Json;

namespace Apb.Server;

// Request bodies of OpenAI's API, as far as this server reads them. Fields that can hold more than one JSON type
// ("content", "stop", "prompt") stay JsonElement and are checked by hand, so the error can name the field and say
// what it holds. Fields we do not read are ignored, as OpenAI's own server does with unknown ones.

public sealed class ChatCompletionRequest
{
    public string? Model { get; set; }
    public List<ChatMessageRequest?>? Messages { get; set; }
    public bool? Stream { get; set; }
    public StreamOptionsRequest? StreamOptions { get; set; }
    public int? MaxTokens { get; set; }
    public int? MaxCompletionTokens { get; set; }
    public double? Temperature { get; set; }
    public double? TopP { get; set; }
    public int? TopK { get; set; }
    public long? Seed { get; set; }
    public JsonElement? Stop { get; set; }
    public int? N { get; set; }
    public bool? Logprobs { get; set; }
    public JsonElement? Tools { get; set; }
    /// <summary>vLLM's extra template arguments, e.g. {"enable_thinking": false} for Qwen3.</summary>
    public JsonElement? ChatTemplateKwargs { get; set; }
    /// <summary>Ours: true adds "timings" (<see cref="CompletionTimings"/>) to the answer.</summary>
    public bool? ApbTimings { get; set; }
}

public sealed class ChatMessageRequest
{
    public string? Role { get; set; }
    public JsonElement? Content { get; set; }
    public string? Name { get; set; }
}

public sealed class StreamOptionsRequest
{
    public bool? IncludeUsage { get; set; }
}

public sealed class CompletionRequest
{
    public string? Model { get; set; }
    public JsonElement? Prompt { get; set; }
    public bool? Stream { get; set; }
    public StreamOptionsRequest? StreamOptions { get; set; }
    public int? MaxTokens { get; set; }
    public double? Temperature { get; set; }
    public double? TopP { get; set; }
    public int? TopK { get; set; }
    public long? Seed { get; set; }
    public JsonElement? Stop { get; set; }
    public int? N { get; set; }
    public int? BestOf { get; set; }
    public bool? Echo { get; set; }
    public JsonElement? Logprobs { get; set; }
    public string? Suffix { get; set; }
}
