using System.Text.Json;

namespace Apb.Charts;

/// <summary>One row of `apb eval ruler --json` (RulerHarness.WriteJson); Variant: what the run changed from the strategy's defaults.</summary>
public sealed record RulerRow(string Strategy, int Ranks, int Length, string Task, double Accuracy, int Samples, string? Variant = null);

/// <summary>One measured prefill point: an `apb bench prefill` result row, or a peer's (bench/peers/hf_prefill.py).</summary>
public sealed record PrefillPoint(string Series, bool Peer, int Length, double Seconds);

/// <summary>All prefill points plus what the files say about the run, for the title.</summary>
public sealed record PrefillData(IReadOnlyList<PrefillPoint> Points, IReadOnlyList<string> Models, IReadOnlyList<string> Shapes,
    IReadOnlyList<string> Devices, int? QueryTokens);

/// <summary>Reads result JSON files; every problem is a <see cref="ChartInputException"/> naming the file.</summary>
public static class ResultFiles
{
    /// <summary>
    /// Each argument is a file, or FILE=VARIANT: then that file's rows of strategies other than full that carry no
    /// "variant" of their own get VARIANT (files written before the harness recorded it: "apb" with the retaining heads
    /// and "apb" with the query-aware scorer would otherwise be one series).
    /// </summary>
    public static IReadOnlyList<RulerRow> LoadRuler(IEnumerable<string> paths, TextWriter? log = null)
    {
        var rows = new List<RulerRow>();
        foreach (var arg in paths)
        {
            string path = arg; string? label = null;
            int eq = arg.LastIndexOf('=');
            if (!File.Exists(arg) && eq > 0) { path = arg[..eq]; label = arg[(eq + 1)..]; }
            if (label is "") throw new ChartInputException($"{arg}: empty variant after '=' (FILE=VARIANT, e.g. run.json=\"retaining heads\")");
            using var doc = Parse(path);
            var results = Results(doc, path, "apb eval ruler --json");
            // A run stopped early keeps its finished rows (complete: false): charted, but said, since tasks may be missing.
            if (doc.RootElement.TryGetProperty("complete", out var complete) && complete.ValueKind == JsonValueKind.False)
                log?.WriteLine($"note: {path} is from a run that stopped early (complete: false): {results.GetArrayLength()} row(s), the rest were never measured");
            int i = 0;
            foreach (var r in results.EnumerateArray())
            {
                string where = $"{path}: results[{i++}]";
                if (r.ValueKind != JsonValueKind.Object) throw new ChartInputException($"{where} is not an object");
                string strategy = Str(r, "strategy", where);
                string? variant = r.TryGetProperty("variant", out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()
                    : strategy == "full" ? null : label;
                rows.Add(new RulerRow(strategy, Int(r, "ranks", where), Int(r, "length", where), Str(r, "task", where),
                    Num(r, "accuracy", where), Int(r, "samples", where), variant));
            }
        }
        if (rows.Count == 0) throw new ChartInputException("no RULER results in the given files");
        return rows;
    }

    /// <summary>
    /// Prefill files: `apb bench prefill` JSON (results with strategy/length/ranks/status/seconds) and peer JSON
    /// (a "peer" name, results with length/status/seconds). A directory reads every *.json in it that is one of those,
    /// skipping others (the attention-kernel files) with a note on <paramref name="log"/>.
    /// </summary>
    public static PrefillData LoadPrefill(IEnumerable<string> paths, TextWriter? log = null)
    {
        var byKey = new Dictionary<(string Series, int Length), PrefillPoint>();
        var models = new List<string>(); var shapes = new List<string>(); var devices = new List<string>();
        int? query = null;
        foreach (var arg in paths)
        {
            bool dir = Directory.Exists(arg);
            var files = dir ? Directory.GetFiles(arg, "*.json").Order(StringComparer.Ordinal).ToArray() : [arg];
            if (dir && files.Length == 0) throw new ChartInputException($"{arg}: no *.json files in this directory");
            int used = 0;
            foreach (var path in files)
            {
                using var doc = Parse(path);
                var root = doc.RootElement;
                if (dir && !LooksLikePrefill(root)) { log?.WriteLine($"apb-charts: skipping {path} (not a prefill result)"); continue; }
                used++;
                var results = Results(doc, path, "apb bench prefill or bench/peers/hf_prefill.py");
                if (!LooksLikePrefill(root))
                    throw new ChartInputException($"{path}: not a prefill result (expected \"world_size\" from apb bench prefill or \"peer\" from a peer script, and a \"length\" in every result)");
                string? peer = root.TryGetProperty("peer", out var p) && p.ValueKind == JsonValueKind.String ? p.GetString() : null;
                if (OptStr(root, "model") is string m) AddOnce(models, m);
                if (Shape(root) is string s) AddOnce(shapes, s);
                if (OptStr(root, "device") is string d) AddOnce(devices, d);
                if (root.TryGetProperty("query_tokens", out var q) && q.TryGetInt32(out int qt)) query ??= qt;
                int i = 0;
                foreach (var r in results.EnumerateArray())
                {
                    string where = $"{path}: results[{i++}]";
                    if (r.ValueKind != JsonValueKind.Object) throw new ChartInputException($"{where} is not an object");
                    int length = Int(r, "length", where);
                    string status = OptStr(r, "status") ?? "ok";
                    if (status != "ok") continue; // skipped / oom / failed cases have no time
                    double seconds = Num(r, "seconds", where);
                    string series = peer != null ? PeerLabel(peer) : $"{Str(r, "strategy", where)} x{Int(r, "ranks", where)}";
                    // A later file wins for the same series and length (a re-run of one case).
                    byKey[(series, length)] = new PrefillPoint(series, peer != null, length, seconds);
                }
            }
            if (dir && used == 0) throw new ChartInputException($"{arg}: no prefill result files in this directory");
        }
        if (byKey.Count == 0) throw new ChartInputException("no measured (status ok) prefill results in the given files");
        return new PrefillData(byKey.Values.ToList(), models, shapes, devices, query);
    }

    /// <summary>"hf_transformers_sdpa" → "HF transformers (sdpa)"; other peers keep their name.</summary>
    public static string PeerLabel(string peer) => peer switch
    {
        "hf_transformers_sdpa" => "HF transformers (sdpa) x1",
        _ when peer.StartsWith("hf_", StringComparison.Ordinal) => $"HF {peer[3..].Replace('_', ' ')} x1",
        _ => peer,
    };

    static bool LooksLikePrefill(JsonElement root) =>
        root.ValueKind == JsonValueKind.Object && (root.TryGetProperty("world_size", out _) || root.TryGetProperty("peer", out _))
        && root.TryGetProperty("results", out var r) && r.ValueKind == JsonValueKind.Array
        && r.EnumerateArray().All(x => x.ValueKind == JsonValueKind.Object && x.TryGetProperty("length", out _));

    static string? Shape(JsonElement root)
    {
        if (!root.TryGetProperty("shape", out var s) || s.ValueKind != JsonValueKind.Object) return null;
        int? Get(string n) => s.TryGetProperty(n, out var v) && v.TryGetInt32(out int x) ? x : null;
        var parts = new List<string>();
        if (Get("layers") is int l) parts.Add($"{l} layers");
        if (Get("hidden") is int h) parts.Add($"hidden {h}");
        if (Get("heads") is int hd) parts.Add(Get("kv_heads") is int kv ? $"{hd}/{kv} heads" : $"{hd} heads");
        return parts.Count == 0 ? null : string.Join(", ", parts);
    }

    static void AddOnce(List<string> list, string value) { if (!list.Contains(value)) list.Add(value); }

    static JsonDocument Parse(string path)
    {
        if (!File.Exists(path)) throw new ChartInputException($"{path}: file not found");
        try { return JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new ChartInputException($"{path}: not valid JSON ({e.Message})"); }
    }

    static JsonElement Results(JsonDocument doc, string path, string expected)
    {
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("results", out var results) || results.ValueKind != JsonValueKind.Array)
            throw new ChartInputException($"{path}: expected an object with a \"results\" array (the output of {expected})");
        return results;
    }

    static string? OptStr(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    static string Str(JsonElement e, string name, string where) =>
        OptStr(e, name) is { Length: > 0 } s ? s : throw new ChartInputException($"{where} has no string \"{name}\"");

    static int Int(JsonElement e, string name, string where) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int x) ? x
            : throw new ChartInputException($"{where} has no integer \"{name}\"");

    static double Num(JsonElement e, string name, string where) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && double.IsFinite(v.GetDouble()) ? v.GetDouble()
            : throw new ChartInputException($"{where} has no number \"{name}\"");
}
