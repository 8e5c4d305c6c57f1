using System.Text.Json;
using Apb.Backends.Cpu;
using Apb.Checkpoints;
using Apb.Engine;
using Apb.Eval;
using Apb.Model;
using Xunit;

namespace Apb.Tests.Eval;

/// <summary>
/// The harness end to end on the CPU: on the trained models/embedded it must retrieve (an accuracy floor); on the
/// random embedded model only the plumbing is checked (its accuracy is ~0 by construction).
/// </summary>
public class HarnessTests
{
    static string SmallModel => Repo.EmbeddedModel;

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = Apb.Cli.Cli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void TrainedSmallModelRetrievesSingleNeedlesWithFullAttention()
    {
        if (!File.Exists(Path.Combine(SmallModel, "model.safetensors"))) return; // the model is not committed yet
        using var bundle = ModelBundle.Open(SmallModel);
        var weights = LlamaWeights.Load(bundle.Config, bundle.Checkpoint, new CpuBackend());
        var samples = new SampleGenerator(bundle.Tokenizer).GenerateAll(RulerTasks.Parse("niah_single_1,niah_single_2,niah_single_3"), [512], 2, seed: 0);
        var rows = RulerHarness.Run(samples, [new StrategySpec("full", 1)],
            (_, e) => new LocalSession(new LlamaModel(bundle.Config, weights, new CpuBackend()), RulerHarness.Capacity(e)),
            bundle.Tokenizer, bundle.StopTokens.ToHashSet());
        Assert.Equal(3, rows.Count);
        double mean = rows.Average(r => r.Accuracy);
        Assert.True(mean >= 0.8, $"mean accuracy {mean:F2} on single needles at 512 tokens; the model scored 1.0 when trained:\n{RulerHarness.FormatTable(rows)}");
    }

    [Fact]
    public void RulerCommandOnTheEmbeddedModelReportsFractionsPerStrategyLengthAndTask()
    {
        string json = Path.Combine(Path.GetTempPath(), $"apb-ruler-{Guid.NewGuid():N}.json");
        try
        {
            var (code, output, err) = Run("eval", "ruler", "--model", Repo.TinyModel, "--tasks", "niah_single_1,fwe", "--length", "640",
                "--samples", "1", "--strategies", "full,apb", "--ranks", "2", "--json", json);
            Assert.True(code == 0, err);
            Assert.Contains("| length | task | samples | full |", output);
            Assert.Contains("apb x2", output);
            using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
            var results = doc.RootElement.GetProperty("results").EnumerateArray().ToList();
            Assert.Equal(4, results.Count); // 2 strategies x 1 length x 2 tasks
            foreach (var r in results)
            {
                double acc = r.GetProperty("accuracy").GetDouble();
                Assert.InRange(acc, 0.0, 1.0);
                Assert.Equal(640, r.GetProperty("length").GetInt32());
                Assert.Equal(1, r.GetProperty("samples").GetInt32());
                Assert.Equal(r.GetProperty("strategy").GetString() == "apb" ? 2 : 1, r.GetProperty("ranks").GetInt32());
            }
        }
        finally { File.Delete(json); }
    }

    [Fact]
    public void RulerRunsThatChangeApbsDefaultsNameTheVariantInTableAndJson()
    {
        string json = Path.Combine(Path.GetTempPath(), $"apb-ruler-{Guid.NewGuid():N}.json");
        try
        {
            var (code, output, err) = Run("eval", "ruler", "--model", Repo.TinyModel, "--tasks", "niah_single_1", "--length", "640",
                "--samples", "1", "--strategies", "full,apb", "--ranks", "2", "--passing", "64", "--json", json);
            Assert.True(code == 0, err);
            Assert.Contains("| apb x2 (l_p 64) |", output);
            using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
            var byStrategy = doc.RootElement.GetProperty("results").EnumerateArray()
                .ToDictionary(r => r.GetProperty("strategy").GetString()!, r => r);
            Assert.Equal("l_p 64", byStrategy["apb"].GetProperty("variant").GetString());
            Assert.False(byStrategy["full"].TryGetProperty("variant", out _), "full attention has no APB settings to name");
        }
        finally { File.Delete(json); }
    }

    [Fact]
    public void GenerateCommandWritesOneLinePerSampleAndExplainsBadInput()
    {
        string path = Path.Combine(Path.GetTempPath(), $"apb-gen-{Guid.NewGuid():N}.jsonl");
        try
        {
            var (code, _, err) = Run("eval", "generate", "--tokenizer", Repo.TinyModel, "--tasks", "niah,vt", "--length", "512,1k", "--samples", "2", "--out", path);
            Assert.True(code == 0, err);
            var lines = File.ReadAllLines(path);
            Assert.Equal(9 * 2 * 2, lines.Length);
            using var first = JsonDocument.Parse(lines[0]);
            Assert.Equal("niah_single_1", first.RootElement.GetProperty("task").GetString());
            Assert.True(first.RootElement.GetProperty("context_ids").GetArrayLength() > 300);

            var bad = Run("eval", "generate", "--tasks", "nope", "--out", path);
            Assert.Equal(1, bad.Code);
            Assert.Contains("unknown task 'nope'", bad.Err);
            bad = Run("eval", "ruler", "--model", Repo.TinyModel, "--length", "64k");
            Assert.Equal(1, bad.Code);
            Assert.Contains("max_position_embeddings", bad.Err);
        }
        finally { File.Delete(path); }
    }
}
