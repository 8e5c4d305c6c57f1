using System.Text.Json;
using System.Text.Json.Serialization;

namespace Apb.Server;

// Request bodies of OpenAI's API, as far as this server reads them. Fields that can hold more than one JSON type
// ("content", "stop", "prompt", "logit_bias") stay JsonElement and are checked by hand, so the error can name the field
// and say what it holds. A field this server does not read is never ignored: it lands in Unknown and the request is
// refused naming it (RequestFields.CheckUnknown), as OpenAI refuses an unrecognized argument.

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
    public double? FrequencyPenalty { get; set; }
    public double? PresencePenalty { get; set; }
    public JsonElement? LogitBias { get; set; }
    public bool? Logprobs { get; set; }
    public int? TopLogprobs { get; set; }
    public JsonElement? ResponseFormat { get; set; }
    public JsonElement? Tools { get; set; }
    public JsonElement? ToolChoice { get; set; }
    /// <summary>An end-user id for OpenAI's abuse monitoring: read, shown in the request log, no effect on the output.</summary>
    public string? User { get; set; }
    /// <summary>vLLM's extra template arguments, e.g. {"enable_thinking": false} for Qwen3.</summary>
    public JsonElement? ChatTemplateKwargs { get; set; }
    /// <summary>Ours: true adds "timings" (<see cref="CompletionTimings"/>) to the answer.</summary>
    public bool? ApbTimings { get; set; }
    [JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
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
    public double? FrequencyPenalty { get; set; }
    public double? PresencePenalty { get; set; }
    public JsonElement? LogitBias { get; set; }
    /// <summary>The legacy API's logprobs: how many alternatives per token (0..20), null for none.</summary>
    public int? Logprobs { get; set; }
    public string? Suffix { get; set; }
    public string? User { get; set; }
    /// <summary>Ours, as in chat: true adds "timings" (<see cref="CompletionTimings"/>) to the answer.</summary>
    public bool? ApbTimings { get; set; }
    [JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
}
