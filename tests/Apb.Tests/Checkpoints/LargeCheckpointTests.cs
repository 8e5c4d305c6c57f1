using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Apb.Backends.Cpu;
using Apb.Checkpoints;
using Apb.Model;
using Apb.Strategies;
using Xunit;
using Xunit.Abstractions;

namespace Apb.Tests.Checkpoints;

/// <summary>
/// A 32B-parameter checkpoint (Qwen2.5-32B's shape, 61.03 GiB of bf16 in 13 shards) written as sparse files: headers and
/// an index as Hugging Face writes them, the data all holes, so it costs no disk and no time to make. It opens and its
/// weights load by memory map (the CPU backend reads in place), with progress; `apb inspect --context` reads it and
/// answers how many H200s each strategy needs.
/// </summary>
public class LargeCheckpointTests(ITestOutputHelper log) : IDisposable
{
    readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    const long ShardBytes = 5L << 30;

    static JsonObject Qwen25_32B() => new()
    {
        ["architectures"] = new JsonArray("Qwen2ForCausalLM"), ["model_type"] = "qwen2",
        ["hidden_size"] = 5120, ["intermediate_size"] = 27648, ["num_hidden_layers"] = 64,
        ["num_attention_heads"] = 40, ["num_key_value_heads"] = 8, ["vocab_size"] = 152064,
        ["max_position_embeddings"] = 131072, ["rms_norm_eps"] = 1e-6, ["rope_theta"] = 1000000.0,
        ["tie_word_embeddings"] = false, ["torch_dtype"] = "bfloat16", ["eos_token_id"] = 2,
    };

    /// <summary>The checkpoint folder: config.json, sparse shards, model.safetensors.index.json, qwen2-tiny's tokenizer.</summary>
    string Write()
    {
        string dir = _tmp.Path;
        JsonFiles.Write(Path.Combine(dir, "config.json"), Qwen25_32B());
        foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(Repo.Fixture("qwen2-tiny"), f), Path.Combine(dir, f));
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        var shards = new List<List<LlamaWeights.Spec>> { new() };
        long inShard = 0;
        foreach (var t in LlamaWeights.Specs(config))
        {
            long bytes = t.Shape.Aggregate(2L, (a, b) => a * b);
            if (inShard + bytes > ShardBytes && shards[^1].Count > 0) { shards.Add([]); inShard = 0; }
            shards[^1].Add(t);
            inShard += bytes;
        }
        var map = new JsonObject();
        for (int s = 0; s < shards.Count; s++)
        {
            string name = $"model-{s + 1:D5}-of-{shards.Count:D5}.safetensors";
            var header = new JsonObject { ["__metadata__"] = new JsonObject { ["format"] = "pt" } };
            long at = 0;
            foreach (var t in shards[s])
            {
                long bytes = t.Shape.Aggregate(2L, (a, b) => a * b);
                header[t.Name] = new JsonObject
                {
                    ["dtype"] = "BF16",
                    ["shape"] = new JsonArray(t.Shape.Select(x => (JsonNode?)JsonValue.Create(x)).ToArray()),
                    ["data_offsets"] = new JsonArray(at, at + bytes),
                };
                at += bytes;
                map[t.Name] = name;
            }
            var json = Encoding.UTF8.GetBytes(header.ToJsonString());
            int padded = (json.Length + 7) / 8 * 8;
            using var fs = File.Create(Path.Combine(dir, name));
            var n = new byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(n, padded);
            fs.Write(n);
            fs.Write(json);
            for (int i = json.Length; i < padded; i++) fs.WriteByte((byte)' ');
            fs.SetLength(8 + padded + at); // the data: a hole
        }
        JsonFiles.Write(Path.Combine(dir, "model.safetensors.index.json"), new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map });
        return dir;
    }

    [Fact]
    public void ShardedCheckpointOpensAndLoadsByMemoryMapWithProgress()
    {
        string dir = Write();
        var clock = Stopwatch.StartNew();
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        using var ckpt = CheckpointWeights.Open(dir);
        var opened = clock.Elapsed;
        var reports = new List<LoadProgress>();
        var weights = LlamaWeights.Load(config, ckpt, new CpuBackend(), reports.Add);
        log.WriteLine($"{ckpt.Files.Count} shards, {ckpt.Tensors.Count()} tensors, {config.ParameterCount:N0} parameters: " +
            $"opened in {opened.TotalSeconds:F2} s, weights loaded in {(clock.Elapsed - opened).TotalSeconds:F2} s (CPU: in place)");

        Assert.True(config.ParameterCount > 30e9, $"{config.ParameterCount:N0} parameters");
        Assert.Equal(13, ckpt.Files.Count);
        Assert.Equal(64, weights.Layers.Length);
        long fileBytes = ckpt.Tensors.Sum(t => t.End - t.Begin);
        Assert.Equal(config.ParameterCount * 2, fileBytes);
        // One report per tensor, growing to the whole checkpoint.
        Assert.Equal(ckpt.Tensors.Count(), reports.Count);
        Assert.True(reports.Zip(reports.Skip(1)).All(p => p.Second.Bytes > p.First.Bytes && p.Second.Elapsed >= p.First.Elapsed));
        Assert.Equal((fileBytes, fileBytes, reports.Count), (reports[^1].Bytes, reports[^1].TotalBytes, reports[^1].TotalTensors));
        Assert.True(reports[^1].Done && !reports[^2].Done);
    }

    [Fact]
    public void InspectSaysHowManyH200sEachStrategyNeeds()
    {
        string dir = Write();
        var (code, output, err) = CliRun.Apb("inspect", "--model", dir, "--context", "512k");
        log.WriteLine(output);
        Assert.True(code == 0, err);
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        Assert.Contains("weights        61.03 GiB in 13 file(s), memory-mapped", output);
        Assert.Contains("weights per GPU  61.03 GiB", output);
        Assert.Contains("kv cache         256.0 KiB per token", output);
        Assert.Contains("exceed max_position_embeddings 131072", output);

        // Each row's answer is the smallest power of two whose per-rank bytes fit, by RankMemory's own arithmetic.
        const int n = 512 * 1024, q = 64;
        foreach (var s in new[] { StrategyKind.Ring, StrategyKind.Zigzag, StrategyKind.Ulysses, StrategyKind.Star, StrategyKind.Apb })
        {
            string row = output.Split('\n').Single(l => l.TrimStart().StartsWith(s.ToString().ToLowerInvariant() + " ", StringComparison.Ordinal));
            int fewest = int.Parse(row.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries)[^1]);
            Assert.Null(RankMemory.Unrunnable(config, s, fewest));
            Assert.True(RankMemory.Fits(RankMemory.PerRank(config, s, n, q, fewest), RankMemory.H200Bytes), $"{s}: {fewest} ranks do not fit");
            for (int h = 2; h < fewest; h *= 2)
                Assert.False(RankMemory.Unrunnable(config, s, h) is null && RankMemory.Fits(RankMemory.PerRank(config, s, n, q, h), RankMemory.H200Bytes),
                    $"{s}: {h} ranks would fit already, the table says {fewest}");
        }
        // 512K tokens of KV cache alone (128 GiB) and the weights do not fit one H200.
        Assert.Matches(@"full\s.*does not fit one", output);
    }

    [Fact]
    public void ProgressLogIsQuietForFastLoadsAndReportsSlowOnes()
    {
        var fast = new StringWriter();
        var quiet = new LoadProgressLog(fast, TimeSpan.FromSeconds(2));
        quiet.Report(new LoadProgress(10, 20, 1, 2, TimeSpan.FromSeconds(0.5)));
        quiet.Report(new LoadProgress(20, 20, 2, 2, TimeSpan.FromSeconds(1)));
        Assert.Equal("", fast.ToString());

        var slow = new StringWriter();
        var loud = new LoadProgressLog(slow, TimeSpan.FromSeconds(2));
        long gib = 1L << 30;
        loud.Report(new LoadProgress(1 * gib, 8 * gib, 10, 80, TimeSpan.FromSeconds(1)));   // too early
        loud.Report(new LoadProgress(2 * gib, 8 * gib, 20, 80, TimeSpan.FromSeconds(2)));   // printed
        loud.Report(new LoadProgress(3 * gib, 8 * gib, 30, 80, TimeSpan.FromSeconds(3)));   // within 2 s of the last
        loud.Report(new LoadProgress(4 * gib, 8 * gib, 40, 80, TimeSpan.FromSeconds(4.5))); // printed
        loud.Report(new LoadProgress(8 * gib, 8 * gib, 80, 80, TimeSpan.FromSeconds(5)));   // the summary, always
        Assert.Equal(
            "loading weights: 2.0 of 8.0 GiB (25%), 20 of 80 tensors, 1.00 GiB/s\n" +
            "loading weights: 4.0 of 8.0 GiB (50%), 40 of 80 tensors, 0.89 GiB/s\n" +
            "loaded weights: 8.0 GiB in 5.0 s (1.60 GiB/s)\n", slow.ToString().Replace("\r\n", "\n"));
    }
}
