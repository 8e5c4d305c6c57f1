using System.Text.Json;
using Apb.Engine;
using Apb.Serving;

namespace Apb.Server;

/// <summary>The checks shared by /v1/chat/completions and /v1/completions, each failing with the field's name.</summary>
static class RequestFields
{
    /// <summary>OpenAI allows 4; we allow a few more since each one is only a substring search per token.</summary>
    public const int MaxStopSequences = 16;
    /// <summary>Text held back while it may still become a stop sequence is compared against each one per token: bounded.</summary>
    public const int MaxStopLength = 1024;

    public static void CheckModel(string? requested, ServedModel model)
    {
        if (requested is null || requested == model.Id) return;
        throw new InvalidRequestException(
            $"The model '{requested}' does not exist on this server; it serves '{model.Id}' (GET /v1/models lists it).",
            "model", "model_not_found", 404);
    }

    public static void CheckN(int? n)
    {
        if (n is null or 1) return;
        throw new InvalidRequestException($"'n' is {n}; this server generates one choice per request (n = 1). Send n separate requests.", "n", "invalid_value");
    }

    /// <summary>OpenAI's defaults: temperature 1, top_p 1. top_k is an extension (vLLM's): 0 or -1 turn it off.</summary>
    public static SamplingOptions Sampling(double? temperature, double? topP, int? topK, long? seed, int maxNewTokens)
    {
        double t = temperature ?? 1.0;
        if (t < 0) throw new InvalidRequestException($"'temperature' must be 0 or more (0 = greedy), got {t}", "temperature", "invalid_value");
        double p = topP ?? 1.0;
        if (!(p > 0 && p <= 1)) throw new InvalidRequestException($"'top_p' must be in (0, 1], got {p}", "top_p", "invalid_value");
        int k = topK ?? 0;
        if (k < -1) throw new InvalidRequestException($"'top_k' must be -1 or 0 (off) or a positive count, got {k}", "top_k", "invalid_value");
        return new SamplingOptions
        {
            Temperature = t, TopP = p, TopK = Math.Max(k, 0), MaxNewTokens = maxNewTokens,
            // OpenAI's seed is 64-bit; ours is an int: fold the halves so every 64-bit seed still picks a fixed stream.
            Seed = seed is long s ? (int)(s ^ (s >> 32)) : null,
        };
    }

    public static IReadOnlyList<string> Stop(JsonElement? stop)
    {
        if (stop is not { } e || e.ValueKind == JsonValueKind.Null) return Array.Empty<string>();
        if (e.ValueKind == JsonValueKind.String) return [NonEmpty(RequestBody.Text(e, "stop"), "stop")];
        if (e.ValueKind != JsonValueKind.Array)
            throw new InvalidRequestException(
                $"Invalid type for 'stop': expected a string or an array of strings, got {RequestBody.Kind(e.ValueKind)} {RequestBody.Preview(e)}.",
                "stop", "invalid_type");
        int count = e.GetArrayLength();
        if (count > MaxStopSequences)
            throw new InvalidRequestException($"'stop' has {count} sequences; at most {MaxStopSequences} are allowed", "stop", "invalid_value");
        var list = new List<string>(count);
        int i = 0;
        foreach (var s in e.EnumerateArray())
        {
            if (s.ValueKind != JsonValueKind.String)
                throw new InvalidRequestException(
                    $"Invalid type for 'stop[{i}]': expected a string, got {RequestBody.Kind(s.ValueKind)} {RequestBody.Preview(s)}.",
                    $"stop[{i}]", "invalid_type");
            list.Add(NonEmpty(RequestBody.Text(s, $"stop[{i}]"), $"stop[{i}]"));
            i++;
        }
        return list;
    }

    static string NonEmpty(string s, string param) => s.Length switch
    {
        0 => throw new InvalidRequestException($"'{param}' is an empty string; a stop sequence needs at least one character", param, "invalid_value"),
        > MaxStopLength => throw new InvalidRequestException($"'{param}' has {s.Length} characters; a stop sequence may have at most {MaxStopLength}", param, "invalid_value"),
        _ => s,
    };

    public static bool IncludeUsage(StreamOptionsRequest? options) => options?.IncludeUsage == true;
}
