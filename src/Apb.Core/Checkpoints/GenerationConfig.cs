using System.Text.Json;

namespace Apb.Checkpoints;

/// <summary>generation_config.json: the checkpoint's own stop tokens and sampling defaults. Optional.</summary>
public sealed record GenerationConfig(IReadOnlyList<int> EosTokenIds, double? Temperature, double? TopP, int? TopK, bool? DoSample)
{
    public static readonly GenerationConfig Empty = new(Array.Empty<int>(), null, null, null, null);

    public static GenerationConfig Load(string path)
    {
        if (!File.Exists(path)) return Empty;
        string Fix(string what) => $"{path}: {what}; fix or delete the file (it is optional)";
        JsonDocument doc;
        try { doc = JsonDocument.Parse(InputFile.ReadJsonBytes(path, 1L << 20, "generation config")); }
        catch (JsonException e) { throw new ApbException(Fix($"not valid JSON ({e.Message})")); }
        using var _ = doc;
        var r = doc.RootElement;
        if (r.ValueKind != JsonValueKind.Object)
            throw new ApbException(Fix($"expected a JSON object of generation settings but found {r.ValueKind}"));

        // Fields we do not read may hold anything; the ones we read must have their documented type (null = absent).
        JsonElement? Get(string n) => r.TryGetProperty(n, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;
        int ToInt(JsonElement v, string n) => v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)
            ? i : throw new ApbException(Fix($"'{n}' should be an integer but is {v.GetRawText()}"));
        double? D(string n) => Get(n) is not { } v ? null
            : v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && double.IsFinite(d) ? d
            : throw new ApbException(Fix($"'{n}' should be a number but is {v.GetRawText()}"));
        int? I(string n) => Get(n) is { } v ? ToInt(v, n) : null;
        bool? B(string n) => Get(n) is not { } v ? null
            : v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean()
            : throw new ApbException(Fix($"'{n}' should be true or false but is {v.GetRawText()}"));

        int TokenId(JsonElement v) => ToInt(v, "eos_token_id") is var id && id >= 0 ? id
            : throw new ApbException(Fix($"'eos_token_id' holds {id}; token ids are 0 or more"));
        var eos = Get("eos_token_id") switch
        {
            null => Array.Empty<int>(),
            { ValueKind: JsonValueKind.Array } a => a.EnumerateArray().Select(TokenId).ToArray(),
            { } one => new[] { TokenId(one) },
        };
        return new GenerationConfig(eos, D("temperature"), D("top_p"), I("top_k"), B("do_sample"));
    }
}
