using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Apb.Checkpoints;
using Xunit;

namespace Apb.Tests.Checkpoints;

/// <summary>One tensor for <see cref="SafeTensorsWriter"/>: the dtype in safetensors spelling and the raw little-endian bytes.</summary>
public sealed record TestTensor(string Name, string DType, long[] Shape, byte[] Data);

/// <summary>
/// A hand-made safetensors writer, independent of the reader under test: 8-byte little-endian header length, JSON header
/// padded with spaces (as Hugging Face does, to 8-byte alignment), then the tensors back to back.
/// </summary>
public static class SafeTensorsWriter
{
    public static void Write(string path, IEnumerable<TestTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null, int align = 8)
    {
        var header = new JsonObject();
        if (metadata != null)
        {
            var m = new JsonObject();
            foreach (var (k, v) in metadata) m[k] = v;
            header["__metadata__"] = m;
        }
        var data = new MemoryStream();
        foreach (var t in tensors)
        {
            header[t.Name] = new JsonObject
            {
                ["dtype"] = t.DType,
                ["shape"] = new JsonArray(t.Shape.Select(s => (JsonNode?)JsonValue.Create(s)).ToArray()),
                ["data_offsets"] = new JsonArray(data.Length, data.Length + t.Data.Length),
            };
            data.Write(t.Data);
        }
        WriteRaw(path, header.ToJsonString(), data.ToArray(), align);
    }

    /// <summary>Any header text, padded with spaces to <paramref name="align"/>; <paramref name="lengthField"/> overrides the stored length.</summary>
    public static void WriteRaw(string path, string headerJson, byte[] data, int align = 1, long? lengthField = null) =>
        WriteRaw(path, Encoding.UTF8.GetBytes(headerJson), data, align, lengthField);

    public static void WriteRaw(string path, byte[] header, byte[] data, int align = 1, long? lengthField = null)
    {
        int pad = (align - header.Length % align) % align;
        using var fs = System.IO.File.Create(path);
        Span<byte> n = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(n, lengthField ?? header.Length + pad);
        fs.Write(n);
        fs.Write(header);
        for (int i = 0; i < pad; i++) fs.WriteByte((byte)' ');
        fs.Write(data);
    }

    /// <summary>Every tensor of a file, in data order, with its bytes copied out.</summary>
    public static List<TestTensor> ReadAll(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        return f.Tensors.Values.OrderBy(t => t.Begin)
            .Select(t => new TestTensor(t.Name, DTypes.Name(t.DType), t.Shape, f.Bytes(t).ToArray())).ToList();
    }

    /// <summary>Rewrites a safetensors file with its tensors passed through <paramref name="edit"/> (drop, rename, retype...).</summary>
    public static void Rewrite(string path, Func<List<TestTensor>, IEnumerable<TestTensor>> edit)
    {
        var tensors = edit(ReadAll(path)).ToList();
        Write(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
    }
}

/// <summary>config.json / generation_config.json variants: a fixture's file, edited as a JSON object, written to a temp dir.</summary>
public static class JsonFiles
{
    public static JsonObject Read(string path) => JsonNode.Parse(System.IO.File.ReadAllText(path))!.AsObject();

    public static string Write(string path, JsonNode node)
    {
        System.IO.File.WriteAllText(path, node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return path;
    }

    /// <summary>Edits the JSON file at <paramref name="path"/> in place.</summary>
    public static void Edit(string path, Action<JsonObject> edit)
    {
        var o = Read(path);
        edit(o);
        Write(path, o);
    }
}

public static class Expect
{
    /// <summary>
    /// Runs <paramref name="action"/>, which must throw exactly ApbException (no other type, not nothing), whose message
    /// contains every one of <paramref name="parts"/>. Returns the message.
    /// </summary>
    public static string Error(Action action, params string[] parts)
    {
        var e = Assert.Throws<ApbException>(action);
        foreach (var p in parts)
            Assert.True(e.Message.Contains(p, StringComparison.Ordinal), $"message lacks \"{p}\":\n{e.Message}");
        return e.Message;
    }

    /// <summary>As above for a call that returns something (disposed if it unexpectedly succeeds).</summary>
    public static string Error(Func<object?> call, params string[] parts) =>
        Error(() => { (call() as IDisposable)?.Dispose(); }, parts);
}
