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

    /// <summary>Choices one request may ask for (n): each is a sequence of its own in the engine.</summary>
    public const int MaxChoices = 16;
    /// <summary>Tokens one logit_bias may name (OpenAI allows 300; each costs one add per sampled token).</summary>
    public const int MaxLogitBias = 1024;

    public static int Choices(int? n)
    {
        int c = n ?? 1;
        if (c < 1 || c > MaxChoices)
            throw new InvalidRequestException($"'n' is {c}; this server generates 1 to {MaxChoices} choices per request.", "n", "invalid_value");
        return c;
    }

    /// <summary>
    /// A field this server does not read, refused by name as OpenAI does ("Unrecognized request argument supplied"), so
    /// that no parameter is ever silently ignored. <paramref name="known"/> lists the fields it does read.
    /// </summary>
    public static void CheckUnknown(Dictionary<string, System.Text.Json.JsonElement>? unknown, string known)
    {
        if (unknown is not { Count: > 0 }) return;
        string name = unknown.Keys.First();
        throw new InvalidRequestException(
            $"Unrecognized request argument supplied: '{name}'. This server does not implement it and does not ignore what it " +
            $"cannot do; remove it. The arguments it reads: {known}.", name, "unknown_parameter");
    }

    /// <summary>A field this server reads but cannot honour with a non-default value.</summary>
    public static InvalidRequestException Unsupported(string param, string why) =>
        new($"'{param}' is not supported by this server: {why}", param, "unsupported_parameter");

    /// <summary>response_format: only {"type": "text"} (plain text, the default); JSON modes need constrained decoding, which this server does not have.</summary>
    public static void CheckResponseFormat(JsonElement? format)
    {
        if (format is not { } f || f.ValueKind == JsonValueKind.Null) return;
        string? type = f.ValueKind == JsonValueKind.Object && f.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
        if (type == "text") return;
        if (type is null)
            throw new InvalidRequestException($"Invalid 'response_format': expected an object like {{\"type\": \"text\"}}, got {RequestBody.Kind(f.ValueKind)} {RequestBody.Preview(f)}.",
                "response_format", "invalid_type");
        throw Unsupported("response_format", $"type '{type}' needs constrained decoding (JSON mode, JSON schema), which this server does not " +
                          "do; leave response_format out (or {\"type\": \"text\"}) and ask for JSON in the prompt.");
    }

    /// <summary>
    /// OpenAI's defaults: temperature 1, top_p 1, no penalties, no bias. top_k is an extension (vLLM's): 0 or -1 turn it off.
    /// </summary>
    public static SamplingOptions Sampling(double? temperature, double? topP, int? topK, long? seed, double? frequencyPenalty,
        double? presencePenalty, JsonElement? logitBias, int vocab, int? logprobs)
    {
        double t = temperature ?? 1.0;
        if (t < 0) throw new InvalidRequestException($"'temperature' must be 0 or more (0 = greedy), got {t}", "temperature", "invalid_value");
        double p = topP ?? 1.0;
        if (!(p > 0 && p <= 1)) throw new InvalidRequestException($"'top_p' must be in (0, 1], got {p}", "top_p", "invalid_value");
        int k = topK ?? 0;
        if (k < -1) throw new InvalidRequestException($"'top_k' must be -1 or 0 (off) or a positive count, got {k}", "top_k", "invalid_value");
        double Penalty(double? value, string param) => value is double v && !(Math.Abs(v) <= SamplingOptions.MaxPenalty)
            ? throw new InvalidRequestException($"'{param}' must be in [-2, 2], got {v}", param, "invalid_value") : value ?? 0;
        return new SamplingOptions
        {
            Temperature = t, TopP = p, TopK = Math.Max(k, 0), MaxNewTokens = 1,
            // OpenAI's seed is 64-bit; ours is an int: fold the halves so every 64-bit seed still picks a fixed stream.
            Seed = seed is long s ? (int)(s ^ (s >> 32)) : null,
            FrequencyPenalty = Penalty(frequencyPenalty, "frequency_penalty"), PresencePenalty = Penalty(presencePenalty, "presence_penalty"),
            LogitBias = LogitBias(logitBias, vocab), Logprobs = logprobs,
        };
    }

    /// <summary>logit_bias: {"token id": bias, ...}, ids of this model's vocabulary, biases in [-100, 100].</summary>
    static Dictionary<int, float>? LogitBias(JsonElement? bias, int vocab)
    {
        if (bias is not { } b || b.ValueKind == JsonValueKind.Null) return null;
        if (b.ValueKind != JsonValueKind.Object)
            throw new InvalidRequestException($"Invalid type for 'logit_bias': expected an object mapping token ids to numbers, such as {{\"1234\": -100}}, got {RequestBody.Kind(b.ValueKind)} {RequestBody.Preview(b)}.",
                "logit_bias", "invalid_type");
        var map = new Dictionary<int, float>();
        foreach (var e in b.EnumerateObject())
        {
            if (map.Count == MaxLogitBias)
                throw new InvalidRequestException($"'logit_bias' names more than {MaxLogitBias} tokens; give at most {MaxLogitBias}.", "logit_bias", "invalid_value");
            string param = $"logit_bias.{e.Name}";
            if (!int.TryParse(e.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id) || id >= vocab)
                throw new InvalidRequestException($"'logit_bias' key '{e.Name}' is not a token id of this model (0..{vocab - 1}); keys are token ids as strings, e.g. \"1234\".",
                    param, "invalid_value");
            if (e.Value.ValueKind != JsonValueKind.Number || !e.Value.TryGetDouble(out double v) || !(Math.Abs(v) <= SamplingOptions.MaxBias))
                throw new InvalidRequestException($"'logit_bias' of token {id} must be a number in [-100, 100], got {RequestBody.Kind(e.Value.ValueKind)} {RequestBody.Preview(e.Value)}.",
                    param, "invalid_value");
            map[id] = (float)v;
        }
        return map.Count == 0 ? null : map;
    }

    /// <summary>The number of top alternatives per token (0..20), checked under <paramref name="param"/>.</summary>
    public static int TopLogprobs(int n, string param) => n is >= 0 and <= SamplingOptions.MaxTopLogprobs ? n
        : throw new InvalidRequestException($"'{param}' must be 0..{SamplingOptions.MaxTopLogprobs}, got {n}", param, "invalid_value");

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
