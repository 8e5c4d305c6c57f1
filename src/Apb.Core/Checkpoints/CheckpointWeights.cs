using System.Text.Json;

namespace Apb.Checkpoints;

/// <summary>A weight as the model sees it: element type, shape and a pointer into the memory-mapped file.</summary>
public readonly unsafe struct WeightView(string name, DType dtype, long[] shape, byte* data)
{
    public string Name { get; } = name;
    public DType DType { get; } = dtype;
    public long[] Shape { get; } = shape;
    public byte* Data { get; } = data;

    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public int Rows => (int)Shape[0];
    public int Cols => Shape.Length > 1 ? (int)Shape[1] : 1;
}

/// <summary>
/// All tensors of a checkpoint, from a single model.safetensors or from shards listed by model.safetensors.index.json.
/// Lookups check the shape the model expects, so a wrong checkpoint fails naming the tensor instead of computing garbage.
/// </summary>
public sealed class CheckpointWeights : IDisposable
{
    readonly List<SafeTensorsFile> _files = new();
    readonly Dictionary<string, (SafeTensorsFile File, TensorInfo Info)> _byName = new(StringComparer.Ordinal);

    public string Directory { get; }
    public IEnumerable<TensorInfo> Tensors => _byName.Values.Select(v => v.Info);
    public IReadOnlyList<SafeTensorsFile> Files => _files;

    CheckpointWeights(string dir) { Directory = dir; }

    // A real index lists a few thousand tensors (~100 KB); this bound only stops a wrong file from being read whole.
    const long MaxJsonBytes = 64L << 20;

    public static CheckpointWeights Open(string dir)
    {
        if (!System.IO.Directory.Exists(dir))
            throw new ApbException($"{dir}: checkpoint directory not found (expected a Hugging Face model directory with config.json and *.safetensors)");
        var w = new CheckpointWeights(dir);
        try
        {
            string single = Path.Combine(dir, "model.safetensors");
            string index = Path.Combine(dir, "model.safetensors.index.json");
            if (File.Exists(index)) w.OpenSharded(index);
            else if (File.Exists(single)) w.Add(SafeTensorsFile.Open(single));
            else
            {
                var any = System.IO.Directory.GetFiles(dir, "*.safetensors").OrderBy(f => f, StringComparer.Ordinal).ToArray();
                if (any.Length == 0)
                    throw new ApbException($"{dir}: no model.safetensors or model.safetensors.index.json found (expected a Hugging Face checkpoint directory; .bin/.pt weights are not supported: convert them to safetensors)");
                foreach (var f in any) w.Add(SafeTensorsFile.Open(f));
            }
            return w;
        }
        catch
        {
            w.Dispose();
            throw;
        }
    }

    void OpenSharded(string indexPath)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(InputFile.ReadJsonBytes(indexPath, MaxJsonBytes, "safetensors index")); }
        catch (JsonException e) { throw new ApbException($"{indexPath}: not valid JSON ({e.Message}); re-download it"); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            throw new ApbException($"{indexPath}: missing 'weight_map' object (expected {{\"weight_map\": {{tensor: shard file}}}})");
        var wanted = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            foreach (var e in map.EnumerateObject())
            {
                if (e.Value.ValueKind != JsonValueKind.String)
                    throw new ApbException($"{indexPath}: weight_map entry '{e.Name}' is {e.Value.GetRawText()}, expected a shard file name");
                if (!wanted.TryAdd(e.Name, e.Value.GetString()!))
                    throw new ApbException($"{indexPath}: weight_map lists tensor '{e.Name}' twice");
            }
        }
        catch (InvalidOperationException e)
        {
            // An escape that is not valid UTF-16 (a lone surrogate) cannot become a .NET string.
            throw new ApbException($"{indexPath}: a tensor or shard name is not valid Unicode ({e.Message}): the index is corrupt; re-download it");
        }
        if (wanted.Count == 0)
            throw new ApbException($"{indexPath}: weight_map is empty (expected tensor names mapped to shard files)");

        string root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(Directory));
        var shardPaths = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var shard in wanted.Values.Distinct().OrderBy(s => s, StringComparer.Ordinal))
        {
            // Resolved, not pattern-matched: "a/../b" is fine, "../b", "/b" and "a/../../b" are not.
            string? full = shard.Length == 0 || shard.Contains('\0') || Path.IsPathRooted(shard) ? null : Path.GetFullPath(Path.Combine(root, shard));
            if (full is null || !full.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                throw new ApbException($"{indexPath}: shard name '{shard}' is not a file inside the checkpoint directory (expected a file name such as model-00001-of-00002.safetensors)");
            if (!File.Exists(full))
                throw new ApbException($"{indexPath} lists shard '{shard}' but {full} does not exist: the download is incomplete");
            Add(SafeTensorsFile.Open(full));
            shardPaths[shard] = full;
        }
        foreach (var (name, shard) in wanted)
            if (!_byName.TryGetValue(name, out var found))
                throw new ApbException($"{indexPath} says tensor '{name}' is in '{shard}', but no shard holds it: the shard is incomplete or from another checkpoint");
            else if (found.File.Path != shardPaths[shard])
                throw new ApbException($"{indexPath} says tensor '{name}' is in '{shard}', but it was found in '{Path.GetRelativePath(root, found.File.Path)}': the index and the shards disagree");
    }

    void Add(SafeTensorsFile f)
    {
        _files.Add(f);
        foreach (var t in f.Tensors.Values)
        {
            if (_byName.TryGetValue(t.Name, out var prev))
                throw new ApbException($"tensor '{t.Name}' appears in both {prev.File.Path} and {f.Path}: the checkpoint is inconsistent");
            _byName[t.Name] = (f, t);
        }
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public TensorInfo Info(string name) => _byName.TryGetValue(name, out var e)
        ? e.Info
        : throw new ApbException($"{Directory}: tensor '{name}' is missing from the checkpoint (it has {_byName.Count} tensors)");

    /// <summary>The tensor <paramref name="name"/>, which must have exactly <paramref name="shape"/> and a float dtype.</summary>
    public WeightView Get(string name, params long[] shape) => Get(name, shape, null);

    /// <summary>
    /// As <see cref="Get(string, long[])"/>; <paramref name="dims"/> names the config.json fields the shape comes from
    /// ("vocab_size, hidden_size"), so a mismatch says which field disagrees with the weights.
    /// </summary>
    public unsafe WeightView Get(string name, long[] shape, string? dims)
    {
        string implied = $"[{string.Join(", ", shape)}]" + (dims is null ? "" : $" ({dims})");
        if (!_byName.TryGetValue(name, out var e))
            throw new ApbException($"{Directory}: tensor '{name}' is missing from the checkpoint (expected shape {implied})");
        var t = e.Info;
        if (!t.Shape.SequenceEqual(shape))
            throw new ApbException($"{t.File}: tensor '{name}' has shape {t.ShapeText} but config.json implies {implied}: the weights do not belong to this config");
        if (t.DType is not (DType.F32 or DType.F16 or DType.BF16))
            throw new ApbException($"{t.File}: tensor '{name}' is {DTypes.Name(t.DType)}; weights must be F32, F16 or BF16 (quantized checkpoints are not supported)");
        return new WeightView(name, t.DType, t.Shape, e.File.Pointer(t));
    }

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}
