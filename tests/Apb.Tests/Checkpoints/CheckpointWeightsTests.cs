using System.Text.Json.Nodes;
using Apb.Checkpoints;
using Xunit;

namespace Apb.Tests.Checkpoints;

/// <summary>Checkpoint directories: single file, index + shards, and every way the two can disagree.</summary>
public class CheckpointWeightsTests : IDisposable
{
    readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    static TestTensor F32(string name, params float[] v) =>
        new(name, "F32", [v.Length], v.SelectMany(BitConverter.GetBytes).ToArray());

    void Shard(string file, params TestTensor[] tensors) => SafeTensorsWriter.Write(_tmp.File(file), tensors);

    void Index(params (string Tensor, string Shard)[] map)
    {
        var wm = new JsonObject();
        foreach (var (t, s) in map) wm[t] = s;
        JsonFiles.Write(_tmp.File("model.safetensors.index.json"), new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = wm });
    }

    string IndexPath => _tmp.File("model.safetensors.index.json");

    [Fact]
    public void ShardedFixtureOpensWithEveryIndexedTensor()
    {
        string dir = Repo.Fixture("llama-headdim-sharded");
        using var w = CheckpointWeights.Open(dir);
        var index = JsonFiles.Read(Path.Combine(dir, "model.safetensors.index.json"))["weight_map"]!.AsObject();
        Assert.Equal(3, w.Files.Count);
        Assert.Equal(index.Count, w.Tensors.Count());
        foreach (var (name, shard) in index)
        {
            Assert.True(w.Contains(name), name);
            Assert.Equal(shard!.GetValue<string>(), Path.GetFileName(w.Info(name).File));
        }
        Assert.Equal(DType.F16, w.Info("model.embed_tokens.weight").DType);
    }

    [Fact]
    public void ShardsInASubdirectoryAreFound()
    {
        Directory.CreateDirectory(_tmp.File("weights"));
        Shard("weights/a.safetensors", F32("x", 1, 2));
        Shard("b.safetensors", F32("y", 3));
        Index(("x", "weights/a.safetensors"), ("y", "./weights/../b.safetensors"));
        using var w = CheckpointWeights.Open(_tmp.Path);
        Assert.Equal(new long[] { 2 }, w.Get("x", 2).Shape);
        Assert.Equal(new long[] { 1 }, w.Get("y", 1).Shape);
    }

    [Fact]
    public void DuplicateTensorAcrossShards()
    {
        Shard("model-00001-of-00002.safetensors", F32("a", 1), F32("dup", 2));
        Shard("model-00002-of-00002.safetensors", F32("dup", 3), F32("b", 4));
        Index(("a", "model-00001-of-00002.safetensors"), ("dup", "model-00001-of-00002.safetensors"), ("b", "model-00002-of-00002.safetensors"));
        Expect.Error(() => CheckpointWeights.Open(_tmp.Path), "tensor 'dup'", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "inconsistent");
    }

    [Fact]
    public void DuplicateTensorAcrossUnindexedFiles()
    {
        Shard("consolidated-1.safetensors", F32("dup", 2));
        Shard("consolidated-2.safetensors", F32("dup", 3));
        Expect.Error(() => CheckpointWeights.Open(_tmp.Path), "tensor 'dup'", "consolidated-1.safetensors", "consolidated-2.safetensors");
    }

    [Fact]
    public void IndexNamesAMissingShard()
    {
        Shard("model-00001-of-00002.safetensors", F32("a", 1));
        Index(("a", "model-00001-of-00002.safetensors"), ("b", "model-00002-of-00002.safetensors"));
        Expect.Error(() => CheckpointWeights.Open(_tmp.Path), IndexPath, "'model-00002-of-00002.safetensors'", "does not exist", "download is incomplete");
    }

    [Fact]
    public void IndexedTensorAbsentFromEveryShard()
    {
        Shard("model-00001-of-00001.safetensors", F32("a", 1));
        Index(("a", "model-00001-of-00001.safetensors"), ("model.norm.weight", "model-00001-of-00001.safetensors"));
        Expect.Error(() => CheckpointWeights.Open(_tmp.Path), IndexPath, "tensor 'model.norm.weight'", "'model-00001-of-00001.safetensors'", "no shard holds it");
    }

    [Fact]
    public void IndexedTensorFoundInAnotherShard()
    {
        Shard("s1.safetensors", F32("a", 1));
        Shard("s2.safetensors", F32("b", 1), F32("c", 1));
        Index(("a", "s1.safetensors"), ("b", "s1.safetensors"), ("c", "s2.safetensors"));
        Expect.Error(() => CheckpointWeights.Open(_tmp.Path), IndexPath,
            "tensor 'b' is in 's1.safetensors', but it was found in 's2.safetensors'", "the index and the shards disagree");
    }

    [Theory]
    [InlineData("../x.safetensors")]
    [InlineData("sub/../../x.safetensors")]
    [InlineData("/etc/passwd")]
    [InlineData("..")]
    [InlineData(".")]
    [InlineData("")]
    [InlineData("a\0b.safetensors")]
    public void ShardPathEscapingTheDirectory(string shard)
    {
        // The checkpoint is tmp/ckpt and a valid shard lies at tmp/x.safetensors: only the containment check can refuse it.
        string ckpt = _tmp.File("ckpt");
        Directory.CreateDirectory(ckpt);
        SafeTensorsWriter.Write(_tmp.File("x.safetensors"), [F32("a", 1)]);
        string index = JsonFiles.Write(Path.Combine(ckpt, "model.safetensors.index.json"),
            new JsonObject { ["weight_map"] = new JsonObject { ["a"] = shard } });
        Expect.Error(() => CheckpointWeights.Open(ckpt), index, $"'{shard}'", "is not a file inside the checkpoint directory");
    }

    [Theory]
    [InlineData("{not json", "not valid JSON")]
    [InlineData("[]", "missing 'weight_map' object")]
    [InlineData("{\"metadata\": {}}", "missing 'weight_map' object")]
    [InlineData("{\"weight_map\": [\"a\"]}", "missing 'weight_map' object")]
    [InlineData("{\"weight_map\": {\"a\": 1}}", "weight_map entry 'a' is 1, expected a shard file name")]
    [InlineData("{\"weight_map\": {\"a\": null}}", "weight_map entry 'a' is null")]
    [InlineData("{\"weight_map\": {}}", "weight_map is empty")]
    [InlineData("{\"weight_map\": {\"a\": \"s.safetensors\", \"a\": \"s.safetensors\"}}", "lists tensor 'a' twice")]
    public void MalformedIndex(string json, string message)
    {
        Shard("s.safetensors", F32("a", 1));
        File.WriteAllText(IndexPath, json);
        Expect.Error(() => CheckpointWeights.Open(_tmp.Path), IndexPath, message);
    }

    [Fact]
    public void DirectoryWithNoWeights()
    {
        File.WriteAllText(_tmp.File("config.json"), "{}");
        File.WriteAllBytes(_tmp.File("pytorch_model.bin"), new byte[16]);
        Expect.Error(() => CheckpointWeights.Open(_tmp.Path), _tmp.Path, "no model.safetensors or model.safetensors.index.json", ".bin/.pt weights are not supported");
    }

    [Fact]
    public void DirectoryThatDoesNotExist() =>
        Expect.Error(() => CheckpointWeights.Open(_tmp.File("missing")), "missing", "checkpoint directory not found");

    [Fact]
    public void CorruptShardNamesTheShard()
    {
        Shard("s1.safetensors", F32("a", 1));
        File.WriteAllBytes(_tmp.File("s2.safetensors"), new byte[5]);
        Index(("a", "s1.safetensors"), ("b", "s2.safetensors"));
        Expect.Error(() => CheckpointWeights.Open(_tmp.Path), "s2.safetensors", "too short");
    }

    [Fact]
    public void GetChecksShapeDTypeAndPresence()
    {
        SafeTensorsWriter.Write(_tmp.File("model.safetensors"), [
            F32("w", 1, 2, 3, 4, 5, 6),
            new TestTensor("ids", "I32", [2], new byte[8]),
            new TestTensor("h", "BF16", [2, 1], new byte[4]),
        ]);
        using var w = CheckpointWeights.Open(_tmp.Path);
        Assert.Equal(DType.BF16, w.Get("h", 2, 1).DType);
        Expect.Error(() => w.Get("w", 2, 3), "tensor 'w' has shape [6] but config.json implies [2, 3]");
        Expect.Error(() => w.Get("w", [3, 2], "intermediate_size, hidden_size"), "tensor 'w'", "[6]", "[3, 2] (intermediate_size, hidden_size)");
        Expect.Error(() => w.Get("ids", 2), "tensor 'ids' is I32", "weights must be F32, F16 or BF16");
        Expect.Error(() => w.Get("nope", 4), _tmp.Path, "tensor 'nope' is missing", "[4]");
        Expect.Error(() => w.Info("nope"), "tensor 'nope' is missing");
    }
}
