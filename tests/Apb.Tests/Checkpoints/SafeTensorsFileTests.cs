using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Apb.Checkpoints;
using Xunit;

namespace Apb.Tests.Checkpoints;

/// <summary>
/// The safetensors reader: every malformed header gives one ApbException naming the file (and tensor) with what was
/// expected and found; valid files, including the corner cases Hugging Face writes, round-trip exactly.
/// </summary>
public class SafeTensorsFileTests : IDisposable
{
    readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    string Raw(string header, int dataBytes = 8, long? lengthField = null)
    {
        string p = _tmp.File("t.safetensors");
        SafeTensorsWriter.WriteRaw(p, header, new byte[dataBytes], lengthField: lengthField);
        return p;
    }

    static string Entry(string dtype = "\"F32\"", string shape = "[2]", string offsets = "[0, 8]") =>
        $"{{\"dtype\": {dtype}, \"shape\": {shape}, \"data_offsets\": {offsets}}}";

    // ---- framing: the 8-byte length and the header bytes ----

    [Fact]
    public void MissingFile() =>
        Expect.Error(() => SafeTensorsFile.Open(_tmp.File("nope.safetensors")), "nope.safetensors", "not found");

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(7)]
    public void FileShorterThanEightBytes(int length)
    {
        string p = _tmp.File("short.safetensors");
        File.WriteAllBytes(p, new byte[length]);
        Expect.Error(() => SafeTensorsFile.Open(p), p, $"{length} bytes", "too short");
    }

    [Fact]
    public void HeaderLengthBeyondTheFile()
    {
        // 2-byte header "{}" claimed to be 1000 bytes, with 16 bytes after the length field in the file.
        string p = Raw("{}", dataBytes: 14, lengthField: 1000);
        Expect.Error(() => SafeTensorsFile.Open(p), p, "1000 bytes", "only 16 bytes", "truncated");
    }

    [Theory]
    [InlineData(0L, "0 bytes")]
    [InlineData(1L, "1 bytes")]
    [InlineData(-5L, "18446744073709551611 bytes")]      // a negative i64 is a huge u64: reported as the latter
    [InlineData(long.MinValue, "9223372036854775808 bytes")]
    [InlineData(1L << 40, "1099511627776 bytes")]          // beyond the 100 MB header bound, not merely beyond the file
    public void HeaderLengthFieldOutOfRange(long field, string shown)
    {
        string p = Raw("{}", lengthField: field);
        Expect.Error(() => SafeTensorsFile.Open(p), p, "header length field", shown, "expected 2..");
    }

    [Theory]
    [InlineData("{not json", "not valid JSON")]
    [InlineData("{\"a\": {\"dtype\": \"F32\",}}", "not valid JSON")]        // trailing comma
    [InlineData("[1, 2]", "JSON Array, expected an object")]
    [InlineData("\"x\"", "JSON String, expected an object")]
    [InlineData("null", "JSON Null, expected an object")]
    [InlineData("   ", "not valid JSON")]
    public void HeaderNotAnObject(string header, string message)
    {
        string p = Raw(header);
        Expect.Error(() => SafeTensorsFile.Open(p), p, message);
    }

    [Fact]
    public void HeaderNestedTooDeep()
    {
        string p = Raw("{\"a\": " + new string('[', 5000) + new string(']', 5000) + "}");
        Expect.Error(() => SafeTensorsFile.Open(p), p, "not valid JSON");
    }

    [Fact]
    public void HeaderWithInvalidUtf8()
    {
        string p = _tmp.File("t.safetensors");
        byte[] header = [.. Encoding.UTF8.GetBytes("{\"a"), 0xC3, 0x28, .. Encoding.UTF8.GetBytes("\": " + Entry() + "}")];
        SafeTensorsWriter.WriteRaw(p, header, new byte[8]);
        Expect.Error(() => SafeTensorsFile.Open(p), p, "not valid UTF-8");
    }

    [Fact]
    public void HeaderWithLoneSurrogateEscape()
    {
        string p = Raw("{\"a\\ud800\": " + Entry() + "}");
        Expect.Error(() => SafeTensorsFile.Open(p), p, "not valid Unicode");
    }

    // ---- entries ----

    [Theory]
    [InlineData("5", "header entry is Number")]
    [InlineData("[\"F32\", [2], [0, 8]]", "header entry is Array")]
    [InlineData("{\"shape\": [2], \"data_offsets\": [0, 8]}", "'dtype' is missing")]
    [InlineData("{\"dtype\": 5, \"shape\": [2], \"data_offsets\": [0, 8]}", "'dtype' is 5")]
    [InlineData("{\"dtype\": null, \"shape\": [2], \"data_offsets\": [0, 8]}", "'dtype' is null")]
    [InlineData("{\"dtype\": \"F32\", \"data_offsets\": [0, 8]}", "'shape' is missing")]
    [InlineData("{\"dtype\": \"F32\", \"shape\": \"[2]\", \"data_offsets\": [0, 8]}", "'shape' is \"[2]\"")]
    [InlineData("{\"dtype\": \"F32\", \"shape\": 2, \"data_offsets\": [0, 8]}", "'shape' is 2")]
    [InlineData("{\"dtype\": \"F32\", \"shape\": [2]}", "missing 'data_offsets'")]
    [InlineData("{\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": \"0,8\"}", "data_offsets is \"0,8\"")]
    [InlineData("{\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": {\"begin\": 0}}", "expected [begin, end]")]
    public void EntryOfWrongType(string entry, string message)
    {
        string p = Raw("{\"w\": " + entry + "}");
        Expect.Error(() => SafeTensorsFile.Open(p), p, "tensor 'w'", message);
    }

    [Theory]
    [InlineData("F8_E4M3")]
    [InlineData("f32")]
    [InlineData("")]
    [InlineData("Q4_K")]
    public void UnknownDType(string dtype)
    {
        string p = Raw("{\"w\": " + Entry(dtype: $"\"{dtype}\"") + "}");
        Expect.Error(() => SafeTensorsFile.Open(p), p, "tensor 'w'", $"dtype '{dtype}' is not supported", "F32, F16, BF16");
    }

    [Theory]
    [InlineData("[-1, 2]")]
    [InlineData("[2.5]")]
    [InlineData("[2.0]")]
    [InlineData("[1e1]")]
    [InlineData("[\"2\"]")]
    [InlineData("[null]")]
    [InlineData("[[2]]")]
    [InlineData("[99999999999999999999]")]
    public void ShapeEntryNotANonNegativeInteger(string shape)
    {
        string p = Raw("{\"w\": " + Entry(shape: shape) + "}");
        Expect.Error(() => SafeTensorsFile.Open(p), p, "tensor 'w'", $"shape {shape}", "not a non-negative integer");
    }

    [Fact]
    public void ShapeWithMoreElementsThanAddressable()
    {
        string p = Raw("{\"w\": " + Entry(shape: "[4294967296, 4294967296, 4]") + "}");
        Expect.Error(() => SafeTensorsFile.Open(p), p, "tensor 'w'", "more elements than can be addressed");
    }

    [Fact]
    public void ShapeTimesDTypeOverflowsBytes()
    {
        // 2^62 elements fit a long; 2^62 x 4 bytes does not.
        string p = Raw("{\"w\": " + Entry(shape: "[4611686018427387904]") + "}");
        Expect.Error(() => SafeTensorsFile.Open(p), p, "tensor 'w'", "x F32 has more bytes than can be addressed");
    }

    [Theory]
    [InlineData("[0, 24]", "ends at data byte 24", "only 16 bytes", "truncated")]
    [InlineData("[9223372036854775800, 9223372036854775807]", "ends at data byte 9223372036854775807", "truncated")]
    [InlineData("[8, 0]", "[8, 0] end before they begin")]
    [InlineData("[-8, 0]", "must be two non-negative integers")]
    [InlineData("[0, 8.0]", "must be two non-negative integers")]
    [InlineData("[0, \"8\"]", "must be two non-negative integers")]
    [InlineData("[0]", "data_offsets is [0], expected [begin, end]")]
    [InlineData("[0, 8, 16]", "data_offsets is [0, 8, 16], expected [begin, end]")]
    [InlineData("[]", "data_offsets is [], expected [begin, end]")]
    public void DataOffsetsInvalid(string offsets, params string[] message)
    {
        string p = Raw("{\"w\": " + Entry(offsets: offsets) + "}", dataBytes: 16);
        Expect.Error(() => SafeTensorsFile.Open(p), [p, "tensor 'w'", .. message]);
    }

    [Theory]
    [InlineData("\"F32\"", "[3]", "[0, 8]", "shape [3] x F32 needs 12 bytes but data_offsets give 8 bytes")]
    [InlineData("\"BF16\"", "[2, 2]", "[0, 16]", "shape [2, 2] x BF16 needs 8 bytes but data_offsets give 16 bytes")]
    [InlineData("\"F16\"", "[0]", "[0, 2]", "needs 0 bytes but data_offsets give 2 bytes")]
    [InlineData("\"F32\"", "[]", "[0, 0]", "shape [] x F32 needs 4 bytes but data_offsets give 0 bytes")]
    public void ShapeTimesDTypeSizeDiffersFromByteRange(string dtype, string shape, string offsets, string message)
    {
        string p = Raw("{\"w\": " + Entry(dtype, shape, offsets) + "}", dataBytes: 16);
        Expect.Error(() => SafeTensorsFile.Open(p), p, "tensor 'w'", message);
    }

    [Fact]
    public void OverlappingTensors()
    {
        string p = Raw("{\"a\": " + Entry(offsets: "[0, 8]") + ", \"b\": " + Entry(offsets: "[4, 12]") + "}", dataBytes: 12);
        Expect.Error(() => SafeTensorsFile.Open(p), p, "'a' (bytes 0..8)", "'b' (bytes 4..12)", "overlap");
    }

    [Fact]
    public void GapBetweenTensors()
    {
        string p = Raw("{\"a\": " + Entry(offsets: "[0, 8]") + ", \"b\": " + Entry(offsets: "[12, 20]") + "}", dataBytes: 20);
        Expect.Error(() => SafeTensorsFile.Open(p), p, "tensor 'b' starts at data byte 12", "'a' ends at 8", "back to back");
    }

    [Fact]
    public void FirstTensorNotAtTheStartOfTheData()
    {
        string p = Raw("{\"a\": " + Entry(offsets: "[4, 12]") + "}", dataBytes: 12);
        Expect.Error(() => SafeTensorsFile.Open(p), p, "tensor 'a' starts at data byte 4", "starts at 0");
    }

    [Fact]
    public void TrailingBytesAfterTheLastTensor()
    {
        // The signature of a header edited (or a length field changed) without moving the data: every weight would be shifted.
        string p = Raw("{\"a\": " + Entry(offsets: "[0, 8]") + "}", dataBytes: 11);
        Expect.Error(() => SafeTensorsFile.Open(p), p, "tensors end at data byte 8", "data section has 11 bytes");
    }

    [Fact]
    public void DuplicateTensorNameInOneHeader()
    {
        string p = Raw("{\"a\": " + Entry(offsets: "[0, 8]") + ", \"a\": " + Entry(offsets: "[8, 16]") + "}", dataBytes: 16);
        Expect.Error(() => SafeTensorsFile.Open(p), p, "tensor 'a' appears twice");
    }

    [Theory]
    [InlineData("[\"format\", \"pt\"]", "'__metadata__' is Array")]
    [InlineData("\"pt\"", "'__metadata__' is String")]
    public void MetadataNotAnObject(string metadata, string message)
    {
        string p = Raw("{\"__metadata__\": " + metadata + ", \"w\": " + Entry() + "}");
        Expect.Error(() => SafeTensorsFile.Open(p), p, message);
    }

    // ---- valid files ----

    [Fact]
    public void RoundTripsF32F16BF16Exactly()
    {
        var rng = new Random(7);
        float[] f32 = [0f, -0f, 1.5f, -3.25e-3f, float.Epsilon, float.MaxValue, float.MinValue, float.PositiveInfinity,
            float.NegativeInfinity, 1e-40f /* subnormal */, .. Enumerable.Range(0, 50).Select(_ => (float)(rng.NextDouble() * 2e4 - 1e4))];
        // Every bit pattern is a valid half / bfloat16 (NaNs included): the reader must hand them back untouched.
        ushort[] f16 = [.. Enumerable.Range(0, 300).Select(_ => (ushort)rng.Next(65536)), 0x7C00, 0xFC00, 0x0001, 0x8000];
        ushort[] bf16 = [.. Enumerable.Range(0, 300).Select(_ => (ushort)rng.Next(65536)), 0x7F80, 0xFF80, 0x0001, 0x8000];
        string p = _tmp.File("ok.safetensors");
        SafeTensorsWriter.Write(p, [
            new TestTensor("x.f32", "F32", [2, f32.Length / 2], MemoryMarshal.AsBytes(f32.AsSpan()).ToArray()),
            new TestTensor("x.f16", "F16", [f16.Length], MemoryMarshal.AsBytes(f16.AsSpan()).ToArray()),
            new TestTensor("x.bf16", "BF16", [4, f16.Length / 4], MemoryMarshal.AsBytes(bf16.AsSpan()).ToArray()),
        ]);

        using var f = SafeTensorsFile.Open(p);
        Assert.Equal(3, f.Tensors.Count);
        var t32 = f.Tensors["x.f32"];
        Assert.Equal(DType.F32, t32.DType);
        Assert.Equal(new long[] { 2, f32.Length / 2 }, t32.Shape);
        Assert.Equal(f32.Select(BitConverter.SingleToInt32Bits), MemoryMarshal.Cast<byte, float>(f.Bytes(t32)).ToArray().Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(f16, MemoryMarshal.Cast<byte, ushort>(f.Bytes(f.Tensors["x.f16"])).ToArray());
        Assert.Equal(DType.BF16, f.Tensors["x.bf16"].DType);
        Assert.Equal(bf16, MemoryMarshal.Cast<byte, ushort>(f.Bytes(f.Tensors["x.bf16"])).ToArray());

        // Widening to fp32 (what the CPU backend does) is exact for both half types.
        var wide = new float[bf16.Length];
        unsafe { DTypes.ToFloat(DType.BF16, f.Pointer(f.Tensors["x.bf16"]), wide); }
        for (int i = 0; i < bf16.Length; i++)
            Assert.Equal((uint)bf16[i] << 16, BitConverter.SingleToUInt32Bits(wide[i]));
        unsafe { DTypes.ToFloat(DType.F16, f.Pointer(f.Tensors["x.f16"]), wide.AsSpan(0, f16.Length)); }
        for (int i = 0; i < f16.Length; i++)
        {
            float want = (float)BitConverter.UInt16BitsToHalf(f16[i]);
            Assert.True(float.IsNaN(want) ? float.IsNaN(wide[i]) : BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(wide[i]),
                $"f16 0x{f16[i]:X4}: {wide[i]} != {want}");
        }
    }

    [Fact]
    public void ZeroElementTensorsAndScalars()
    {
        string p = _tmp.File("zero.safetensors");
        SafeTensorsWriter.Write(p, [
            new TestTensor("empty", "F32", [0], []),
            new TestTensor("empty2d", "BF16", [3, 0], []),
            new TestTensor("scalar", "F32", [], BitConverter.GetBytes(2.5f)),
            new TestTensor("alsoEmpty", "F16", [0, 7], []),   // same offset as the scalar's end: not an overlap
        ]);
        using var f = SafeTensorsFile.Open(p);
        Assert.Equal(0, f.Tensors["empty"].ElementCount);
        Assert.Equal(0, f.Bytes(f.Tensors["empty2d"]).Length);
        Assert.Equal(new long[] { 3, 0 }, f.Tensors["empty2d"].Shape);
        Assert.Empty(f.Tensors["scalar"].Shape);
        Assert.Equal(1, f.Tensors["scalar"].ElementCount);
        Assert.Equal(2.5f, BitConverter.ToSingle(f.Bytes(f.Tensors["scalar"])));
        Assert.Equal(0, f.Bytes(f.Tensors["alsoEmpty"]).Length);
    }

    [Fact]
    public void ZeroElementTensorsAtTheSameOffsetDoNotOverlap()
    {
        string p = Raw("{\"a\": " + Entry(shape: "[0]", offsets: "[8, 8]") + ", \"b\": " + Entry(shape: "[0, 3]", offsets: "[8, 8]")
            + ", \"c\": " + Entry(offsets: "[0, 8]") + "}", dataBytes: 8);
        using var f = SafeTensorsFile.Open(p);
        Assert.Equal(3, f.Tensors.Count);
    }

    [Fact]
    public void HeaderWithOnlyMetadataHasNoTensors()
    {
        string p = Raw("{\"__metadata__\": {\"format\": \"pt\"}}", dataBytes: 0);
        using var f = SafeTensorsFile.Open(p);
        Assert.Empty(f.Tensors);
        Assert.Equal("pt", f.Metadata["format"]);
    }

    [Fact]
    public void MetadataIsRead()
    {
        string p = _tmp.File("meta.safetensors");
        SafeTensorsWriter.Write(p, [new TestTensor("w", "F32", [1], new byte[4])],
            new Dictionary<string, string> { ["format"] = "pt", ["producer"] = "apb tests ✓" });
        using var f = SafeTensorsFile.Open(p);
        Assert.Equal(2, f.Metadata.Count);
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal("apb tests ✓", f.Metadata["producer"]);
        Assert.False(f.Tensors.ContainsKey("__metadata__"));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(8)]
    [InlineData(64)]
    public void HeaderPaddedWithTrailingSpacesIsAccepted(int align)
    {
        string p = _tmp.File("pad.safetensors");
        string header = "{\"w\":" + Entry(offsets: "[0, 8]") + "}";
        // Pad to the alignment and then some: 7 extra spaces is the most HF ever adds for 8-byte alignment.
        SafeTensorsWriter.WriteRaw(p, header + "       ", BitConverter.GetBytes(1.0f).Concat(BitConverter.GetBytes(-2.0f)).ToArray(), align);
        using var f = SafeTensorsFile.Open(p);
        Assert.Equal(0, BinaryPrimitives.ReadInt64LittleEndian(File.ReadAllBytes(p).AsSpan(0, 8)) % align);
        Assert.Equal(new[] { 1.0f, -2.0f }, MemoryMarshal.Cast<byte, float>(f.Bytes(f.Tensors["w"])).ToArray());
    }

    [Theory]
    [InlineData("llama-tiny/model.safetensors")]
    [InlineData("qwen2-tiny/model.safetensors")]
    [InlineData("llama-headdim-sharded/model-00002-of-00003.safetensors")]
    public void FixtureFilesOpenAndEveryRangeIsInsideTheFile(string file)
    {
        string p = Path.Combine(Repo.Root, "tests", "fixtures", "models", file);
        using var f = SafeTensorsFile.Open(p);
        Assert.NotEmpty(f.Tensors);
        Assert.Equal("pt", f.Metadata["format"]);
        long dataStart = 8 + BinaryPrimitives.ReadInt64LittleEndian(File.ReadAllBytes(p).AsSpan(0, 8));
        foreach (var t in f.Tensors.Values)
            Assert.InRange(dataStart + t.End, dataStart + t.Begin, f.FileLength);
    }

    [Fact]
    public void DisposeTwiceIsHarmlessAndUseAfterDisposeIsRefused()
    {
        string p = Raw("{\"w\": " + Entry() + "}");
        var f = SafeTensorsFile.Open(p);
        var t = f.Tensors["w"];
        f.Dispose();
        f.Dispose();
        Assert.Throws<ObjectDisposedException>(() => f.Bytes(t).Length);
    }
}
