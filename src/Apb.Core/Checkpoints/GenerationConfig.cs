using System.Text.Json;

namespace Apb.Checkpoints;

/// <summary>generation_config.json: the checkpoint's own stop tokens and sampling defaults. Optional.</summary>
public sealed record GenerationConfig(IReadOnlyList<int> EosTokenIds, double? Temperature, double? TopP, int? TopK, bool? DoSample)
{
    public static readonly GenerationConfig Empty = new(Array.Empty<int>(), null, null, null, null);

    public static GenerationConfig Load(string path)
    {
        if (!File.Exists(path)) return Empty;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var r = doc.RootElement;
            var eos = new List<int>();
            if (r.TryGetProperty("eos_token_id", out var e))
            {
                if (e.ValueKind == JsonValueKind.Number) eos.Add(e.GetInt32());
                else if (e.ValueKind == JsonValueKind.Array) eos.AddRange(e.EnumerateArray().Select(x => x.GetInt32()));
            }
            double? D(string n) => r.TryGetProperty(n, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;
            int? I(string n) => r.TryGetProperty(n, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;
            bool? B(string n) => r.TryGetProperty(n, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;
            return new GenerationConfig(eos, D("temperature"), D("top_p"), I("top_k"), B("do_sample"));
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or FormatException)
        {
            throw new ApbException($"{path}: cannot read ({ex.Message}); fix or delete the file (it is optional)");
        }
    }
}
