using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Unicode;

namespace Apb.Checkpoints;

/// <summary>One tensor's entry in a safetensors header: where its bytes are inside the data section.</summary>
public sealed record TensorInfo(string Name, DType DType, long[] Shape, long Begin, long End, string File)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// A memory-mapped safetensors file. Layout: 8-byte little-endian header length N, N bytes of JSON
/// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data section; offsets are
/// relative to the data section. The whole header is validated up front so a corrupt file fails at open, naming the
/// tensor, rather than as a wild read in the middle of a forward pass. No 2 GB limit: pointers, not arrays.
/// </summary>
public sealed unsafe partial class SafeTensorsFile : IDisposable
{
    // Real headers are a few MB at most (a 1M-token vocab model has < 2,000 tensors); this bound stops a corrupt length
    // from making us allocate gigabytes.
    const long MaxHeaderBytes = 100L << 20;

    readonly MemoryMappedFile? _map;
    readonly MemoryMappedViewAccessor? _view;
    readonly byte* _base;
    readonly long _dataStart;

    public string Path { get; }
    public long FileLength { get; }
    public IReadOnlyDictionary<string, TensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    SafeTensorsFile(string path, long length, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePtr,
        long dataStart, Dictionary<string, TensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path; FileLength = length; _map = map; _view = view; _base = basePtr; _dataStart = dataStart;
        Tensors = tensors; Metadata = metadata;
    }

    public static SafeTensorsFile Open(string path)
    {
        if (!File.Exists(path))
            throw new ApbException($"{path}: file not found (expected a .safetensors weights file)");
        long length, dataStart;
        byte[] json;
        try
        {
            // A regular file: it is memory-mapped, and a FIFO in its place would block the open for ever.
            using var fs = InputFile.OpenRegular(path, "safetensors weights file");
            length = fs.Length;
            if (length < 8)
                throw new ApbException($"{path}: {length} bytes is too short for a safetensors file (it starts with an 8-byte header length): the file is truncated or not safetensors");
            Span<byte> head = stackalloc byte[8];
            fs.ReadExactly(head);
            // The spec says u64; read it unsigned so a corrupt "negative" length is reported as the huge number it is.
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(head);
            if (n < 2 || n > (ulong)MaxHeaderBytes)
                throw new ApbException($"{path}: header length field says {n} bytes (expected 2..{MaxHeaderBytes}): the file is corrupt or not safetensors");
            if ((long)n > length - 8)
                throw new ApbException($"{path}: header length field says {n} bytes but the file has only {length - 8} bytes after it: the file is truncated");
            json = new byte[n];
            fs.ReadExactly(json);
            dataStart = 8 + (long)n;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ApbException($"{path}: cannot read the file ({e.Message})", e);
        }
        var (tensors, metadata) = ParseHeader(path, json, length - dataStart);

        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            // The file may have changed since we read the header; the view must cover every byte the header promised.
            if (view.Capacity < length)
                throw new ApbException($"{path}: the file shrank from {length} to {view.Capacity} bytes while it was being opened");
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            return new SafeTensorsFile(path, length, map, view, p + view.PointerOffset, dataStart, tensors, metadata);
        }
        catch (Exception e)
        {
            view?.Dispose();
            map?.Dispose();
            if (e is IOException or UnauthorizedAccessException)
                throw new ApbException($"{path}: cannot memory-map the file ({e.Message})", e);
            throw;
        }
    }

    static (Dictionary<string, TensorInfo>, Dictionary<string, string>) ParseHeader(string path, byte[] json, long dataLength)
    {
        // Checked up front: JsonDocument accepts some invalid UTF-8 that later surfaces as InvalidOperationException.
        if (!Utf8.IsValid(json))
            throw new ApbException($"{path}: the header is not valid UTF-8: the file is corrupt or not safetensors");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e)
        {
            throw new ApbException($"{path}: the header is not valid JSON ({e.Message}): the file is corrupt");
        }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new ApbException($"{path}: the header is JSON {doc.RootElement.ValueKind}, expected an object of tensors: the file is corrupt");

        var tensors = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            bool sawMetadata = false;
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (sawMetadata)
                        throw new ApbException($"{path}: the header has '__metadata__' twice: the file is corrupt");
                    sawMetadata = true;
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw new ApbException($"{path}: '__metadata__' is {prop.Value.ValueKind}, expected an object of strings: the header is corrupt");
                    foreach (var m in prop.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }
                // JSON allows repeated keys; the second entry would silently replace the first.
                if (tensors.ContainsKey(prop.Name))
                    throw new ApbException($"{path}: tensor '{prop.Name}' appears twice in the header: the file is corrupt");
                tensors[prop.Name] = ParseEntry(path, prop.Name, prop.Value, dataLength);
            }
        }
        catch (InvalidOperationException e)
        {
            // A string escape that is not valid UTF-16 (a lone surrogate, \ud800) cannot become a .NET string.
            throw new ApbException($"{path}: the header has a string that is not valid Unicode ({e.Message}): the file is corrupt");
        }

        // As the reference implementation requires, tensors lie back to back and exactly fill the data section. Overlaps
        // would mean shared storage; a gap or trailing bytes mean the offsets and the data went out of step (a header
        // edited without moving the data), which would otherwise load silently shifted weights.
        var ordered = tensors.Values.OrderBy(t => t.Begin).ThenBy(t => t.End).ToArray();
        long covered = 0;
        for (int i = 0; i < ordered.Length; i++)
        {
            var t = ordered[i];
            string after = i == 0 ? "the data section starts at 0" : $"the previous tensor '{ordered[i - 1].Name}' ends at {covered}";
            if (t.Begin < covered)
                throw new ApbException($"{path}: tensors '{ordered[i - 1].Name}' (bytes {ordered[i - 1].Begin}..{ordered[i - 1].End}) and '{t.Name}' (bytes {t.Begin}..{t.End}) overlap: the header is corrupt");
            if (t.Begin > covered)
                throw new ApbException($"{path}: tensor '{t.Name}' starts at data byte {t.Begin} but {after}: safetensors stores tensors back to back, so the header is corrupt");
            covered = t.End;
        }
        if (covered != dataLength)
            throw new ApbException($"{path}: the tensors end at data byte {covered} but the data section has {dataLength} bytes: the header and the data do not match (the file is corrupt)");
        return (tensors, metadata);
    }

    static TensorInfo ParseEntry(string path, string name, JsonElement e, long dataLength)
    {
        string Where() => $"{path}: tensor '{name}'";
        if (e.ValueKind != JsonValueKind.Object)
            throw new ApbException($"{Where()}: header entry is {e.ValueKind}, expected an object with dtype, shape, data_offsets");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new ApbException($"{Where()}: 'dtype' is {(e.TryGetProperty("dtype", out var x) ? x.GetRawText() : "missing")}, expected a string such as \"BF16\"");
        var dtype = DTypes.Parse(dt.GetString()!)
            ?? throw new ApbException($"{Where()}: dtype '{dt.GetString()}' is not supported (expected one of F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)");
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new ApbException($"{Where()}: 'shape' is {(e.TryGetProperty("shape", out var x) ? x.GetRawText() : "missing")}, expected an array of dimensions");
        var shape = new long[sh.GetArrayLength()];
        int i = 0;
        long elements = 1;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw new ApbException($"{Where()}: shape {sh.GetRawText()} has an entry that is not a non-negative integer");
            shape[i++] = v;
            elements = v == 0 || elements == 0 ? 0 : (elements > long.MaxValue / v ? -1 : elements * v);
            if (elements < 0)
                throw new ApbException($"{Where()}: shape {sh.GetRawText()} has more elements than can be addressed: the header is corrupt");
        }
        if (!e.TryGetProperty("data_offsets", out var off))
            throw new ApbException($"{Where()}: missing 'data_offsets' (expected [begin, end])");
        if (off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new ApbException($"{Where()}: data_offsets is {off.GetRawText()}, expected [begin, end]: the header is corrupt");
        long begin = 0, end = 0;
        int k = 0;
        foreach (var o in off.EnumerateArray())
        {
            if (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out long v) || v < 0)
                throw new ApbException($"{Where()}: data_offsets {off.GetRawText()} must be two non-negative integers");
            if (k++ == 0) begin = v; else end = v;
        }
        if (end < begin)
            throw new ApbException($"{Where()}: data_offsets [{begin}, {end}] end before they begin: the header is corrupt");
        if (end > dataLength)
            throw new ApbException($"{Where()}: ends at data byte {end} but the data section has only {dataLength} bytes: the file is truncated");
        if (elements > long.MaxValue / DTypes.Size(dtype))
            throw new ApbException($"{Where()}: shape {sh.GetRawText()} x {DTypes.Name(dtype)} has more bytes than can be addressed: the header is corrupt");
        long expected = elements * DTypes.Size(dtype);
        if (expected != end - begin)
            throw new ApbException($"{Where()}: shape {sh.GetRawText()} x {DTypes.Name(dtype)} needs {expected} bytes but data_offsets give {end - begin} bytes: the header is corrupt");
        return new TensorInfo(name, dtype, shape, begin, end, path);
    }

    /// <summary>Pointer to the first byte of the tensor, valid while this file is open.</summary>
    public byte* Pointer(TensorInfo t)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!ReferenceEquals(Tensors.GetValueOrDefault(t.Name), t))
            throw new ArgumentException($"tensor '{t.Name}' does not belong to {Path}");
        return _base + _dataStart + t.Begin;
    }

    public ReadOnlySpan<byte> Bytes(TensorInfo t)
    {
        long len = t.End - t.Begin;
        if (len > int.MaxValue)
            throw new ApbException($"{Path}: tensor '{t.Name}' has {len} bytes, too large for a single span; read it through Pointer()");
        return len == 0 ? ReadOnlySpan<byte>.Empty : new ReadOnlySpan<byte>(Pointer(t), (int)len);
    }

    /// <summary>
    /// Asks the kernel to start reading <paramref name="bytes"/> of a mapped file at <paramref name="p"/> into memory now,
    /// in the background (madvise MADV_WILLNEED): a loader that copies weights chunk by chunk announces the next chunks
    /// while it copies this one, so the disk streams instead of serving one page fault at a time. Advice only: where it
    /// is not available (not Linux, no libc) nothing happens, and a copy still faults the pages in.
    /// </summary>
    public static void WillNeed(byte* p, long bytes)
    {
        if (bytes <= 0 || !s_madvise) return;
        long page = Environment.SystemPageSize;
        nint start = (nint)p & ~(nint)(page - 1);
        try
        {
            madvise(start, (nuint)((nint)p - start + bytes), MADV_WILLNEED);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            s_madvise = false;
        }
    }

    static bool s_madvise = OperatingSystem.IsLinux();
    const int MADV_WILLNEED = 3;

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int madvise(nint addr, nuint length, int advice);

    bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_view != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }
}
