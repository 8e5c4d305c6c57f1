using System.Text.Json;

namespace Apb.Eval;

/// <summary>
/// An `apb eval ruler` JSON file read back (the format of <see cref="RulerHarness.WriteJson"/>): what produced it and
/// every row, with its variant and, where the file has them, its per-sample scores. Pairing (<see cref="PairedDifference"/>)
/// and resuming a run (`apb eval ruler --resume`) both read files through it. Fields a hand-written or older file lacks
/// are null (seed, device) or empty (hashes, earlier commands); a row without the fields every writer wrote is an error.
/// </summary>
public sealed record RulerResults(string Path, string? Command, long? Seed, string? Device, string? Engine,
    IReadOnlyDictionary<string, string> Sha256, IReadOnlyList<string> EarlierCommands, List<RulerRow> Rows)
{
    public static RulerResults Read(string path)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(ReadShared(path)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            throw new ApbException($"{path}: cannot read it as an `apb eval ruler` JSON file ({e.Message})");
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object ||
                !root.TryGetProperty("results", out var results) || results.ValueKind != JsonValueKind.Array)
                throw new ApbException($"{path}: no \"results\" array: not an `apb eval ruler` JSON file");
            var rows = new List<RulerRow>();
            try
            {
                foreach (var r in results.EnumerateArray())
                {
                    string? variant = r.TryGetProperty("variant", out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
                    var spec = new StrategySpec(r.GetProperty("strategy").GetString()!, r.GetProperty("ranks").GetInt32(), variant);
                    List<double>? scores = r.TryGetProperty("scores", out var s) ? [.. s.EnumerateArray().Select(x => x.GetDouble())] : null;
                    // "samples" is the scores' count where both are there; a hand-written file may give either
                    int samples = r.TryGetProperty("samples", out var n) ? n.GetInt32() : scores?.Count ?? throw new KeyNotFoundException("\"samples\"");
                    string? settings = r.TryGetProperty("settings", out var st) && st.ValueKind == JsonValueKind.String ? st.GetString() : null;
                    rows.Add(new RulerRow(spec, r.GetProperty("length").GetInt32(), r.GetProperty("task").GetString()!,
                        r.GetProperty("accuracy").GetDouble(), samples, r.GetProperty("seconds").GetDouble(), scores, settings));
                }
            }
            catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new ApbException($"{path}: a row of \"results\" lacks a field or has one of the wrong type ({e.Message})");
            }
            var hashes = new Dictionary<string, string>(StringComparer.Ordinal);
            if (root.TryGetProperty("sha256", out var sha) && sha.ValueKind == JsonValueKind.Object)
                foreach (var p in sha.EnumerateObject())
                    if (p.Value.ValueKind == JsonValueKind.String) hashes[p.Name] = p.Value.GetString()!;
            var earlier = new List<string>();
            if (root.TryGetProperty("earlier_commands", out var ec) && ec.ValueKind == JsonValueKind.Array)
                earlier.AddRange(ec.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.String).Select(x => x.GetString()!));
            return new RulerResults(path, Text(root, "command"),
                root.TryGetProperty("seed", out var sd) && sd.ValueKind == JsonValueKind.Number && sd.TryGetInt64(out long seed) ? seed : null,
                Text(root, "device"), Text(root, "engine"), hashes, earlier, rows);
        }
    }

    /// <summary>
    /// What `apb eval ruler --resume` keeps of this file for <paramref name="run"/>, which plans <paramref name="plan"/>
    /// (strategies) over <paramref name="tasks"/> at <paramref name="lengths"/>, <paramref name="samples"/> samples a
    /// task: Kept, the rows the run need not make again (same strategy, ranks and variant, length and task), whole or in
    /// part (a row with fewer samples holds the run's first ones: the run makes only the rest), and Others, the file's
    /// rows the run does not plan (other strategies, tasks or lengths), which stay in the file. Refuses, saying what
    /// differs and what to do, a file of another seed, build of apb (version and commit), device or model (any file both
    /// runs hashed that differs), a row of the plan with more samples than the run asks (a mean of more samples than the
    /// file would say), and one with fewer whose per-sample scores the file lacks.
    /// </summary>
    public (List<RulerRow> Kept, List<RulerRow> Others) ResumeFor(RulerRun run, IReadOnlyCollection<StrategySpec> plan,
        IReadOnlyCollection<string> tasks, IReadOnlyCollection<int> lengths, int samples)
    {
        string again = "write to another --out, or run without --resume to start the file over";
        if (Seed != run.Seed)
            throw new ApbException($"--resume {Path}: its rows were run with {(Seed is { } s ? $"--seed {s}" : "no seed recorded")}, this run with --seed {run.Seed}: their samples differ; {again}");
        if (Device != run.Device)
            throw new ApbException($"--resume {Path}: its rows were run on {Device ?? "an unrecorded device"}, this run is on {run.Device}: one file holds one device's numbers; {again}");
        if (Engine != run.Engine)
            throw new ApbException($"--resume {Path}: its rows were made by apb {Engine ?? "of an unrecorded build"}, this is apb {run.Engine}: one file holds one build's numbers; {again} (`apb eval paired` compares two files)");
        if (Sha256.Count == 0)
            throw new ApbException($"--resume {Path}: it records no file hashes, so which model it measured is unknown; {again}");
        foreach (var f in run.Files)
            if (Sha256.TryGetValue(f.Name, out var h) && h != f.Sha256)
                throw new ApbException($"--resume {Path}: its {f.Name} had SHA-256 {h[..12]}..., this run's has {f.Sha256[..12]}...: another model or tokenizer; {again}");
        var kept = new List<RulerRow>();
        var others = new List<RulerRow>();
        foreach (var row in Rows)
        {
            if (!plan.Contains(row.Strategy) || !tasks.Contains(row.Task) || !lengths.Contains(row.Length)) { others.Add(row); continue; }
            if (row.Samples > samples)
                throw new ApbException($"--resume {Path}: its {row.Strategy} row of {row.Task} at {row.Length} has {row.Samples} samples, this run asks {samples}: resume with --samples {row.Samples} or more, or {again}");
            // Fewer samples: a sample depends only on (seed, task, length, index), so the row's are this run's first
            // ones and the run adds the rest; that needs the row's own scores, not only its mean.
            if (row.Samples < samples && row.Scores?.Count != row.Samples)
                throw new ApbException($"--resume {Path}: its {row.Strategy} row of {row.Task} at {row.Length} has {row.Samples} samples but not their scores, so it cannot grow to {samples}: resume with --samples {row.Samples}, or {again}");
            if (!kept.Any(k => k.Cell == row.Cell)) kept.Add(row);
        }
        return (kept, others);
    }

    static string? Text(JsonElement root, string name) =>
        root.TryGetProperty(name, out var e) && e.ValueKind == JsonValueKind.String ? e.GetString() : null;

    /// <summary>The file's text, also while `apb eval ruler` still writes it (it lets others read; so must we let it write).</summary>
    static string ReadShared(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var r = new StreamReader(f);
        return r.ReadToEnd();
    }
}
