using Apb.Eval;
using Xunit;

namespace Apb.Tests.Eval;

/// <summary>A result file read back, and what `--resume` keeps of it (the CLI's side: HarnessTests).</summary>
public class RulerResultsTests
{
    static readonly StrategySpec Full = new("full", 1), Apb = new("apb", 4, "retaining heads");

    static RulerRow Row(StrategySpec s, string task, int length, params double[] scores) =>
        new(s, length, task, scores.Average(), scores.Length, 2.5, scores);

    static RulerResults WriteAndRead(TempDir dir, RulerRun run, params RulerRow[] rows)
    {
        string path = dir.File("r.json");
        using (var f = File.Create(path)) RulerHarness.WriteJson(f, run, rows, complete: false);
        return RulerResults.Read(path);
    }

    static readonly RulerRun Run = new("apb eval ruler --json r.json", 0, "cuda", "m",
        [new FileHash("model.safetensors", "aa" + new string('0', 62)), new FileHash("tokenizer.json", "bb" + new string('0', 62))],
        Engine: "0.1.0+1111111");

    [Fact]
    public void RowsComeBackWithTheirVariantScoresAndWhatMadeThem()
    {
        using var dir = new TempDir();
        var file = WriteAndRead(dir, Run with { EarlierCommands = ["apb eval ruler --samples 1"] }, Row(Full, "a", 4096, 1, 0), Row(Apb, "a", 4096, 1, 1));
        Assert.Equal([Full, Apb], file.Rows.Select(r => r.Strategy));
        Assert.Equal([1.0, 0.0], file.Rows[0].Scores!);
        Assert.Equal((0L, "cuda", "0.1.0+1111111"), (file.Seed, file.Device, file.Engine));
        Assert.Equal("apb eval ruler --json r.json", file.Command);
        Assert.Equal(["apb eval ruler --samples 1"], file.EarlierCommands);
        Assert.Equal(Run.Files.Select(f => f.Sha256), file.Sha256.Values);
    }

    [Fact]
    public void ResumeKeepsThePlansFinishedRowsAndLeavesTheRestInTheFile()
    {
        using var dir = new TempDir();
        var file = WriteAndRead(dir, Run, Row(Full, "a", 4096, 1, 0), Row(Full, "b", 4096, 1, 1), Row(Full, "a", 8192, 0, 0),
            Row(Apb, "a", 4096, 1, 1), Row(Apb with { Variant = "query-aware scorer" }, "a", 4096, 0, 1));
        // The plan: full and APB with the heads, task a at 4096.
        var (kept, others) = file.ResumeFor(Run, [Full, Apb], ["a"], [4096], 2);
        Assert.Equal([(Full, "a", 4096), (Apb, "a", 4096)], kept.Select(r => (r.Strategy, r.Task, r.Length)));
        // Task b, length 8192 and APB with another scorer are other runs' rows: not redone, not dropped.
        Assert.Equal(3, others.Count);
    }

    [Fact]
    public void ResumeGrowsRowsOfFewerSamplesOnlyWhereTheFileHasTheirScores()
    {
        using var dir = new TempDir();
        var file = WriteAndRead(dir, Run, Row(Full, "a", 4096, 1, 0), Row(Full, "b", 4096, 1, 0, 1) with { Scores = null });
        // Row a (2 samples, scored) is kept to grow to 3; row b has 3 samples: kept whole although the file lacks its scores.
        var (kept, _) = file.ResumeFor(Run, [Full], ["a", "b"], [4096], 3);
        Assert.Equal([2, 3], kept.Select(r => r.Samples));
        // Growing b to 4 needs its first 3 scores: refused.
        Assert.Contains("has 3 samples but not their scores, so it cannot grow to 4",
            Assert.Throws<ApbException>(() => file.ResumeFor(Run, [Full], ["b"], [4096], 4)).Message);
        // Fewer than the file's: refused.
        Assert.Contains("has 2 samples, this run asks 1: resume with --samples 2 or more",
            Assert.Throws<ApbException>(() => file.ResumeFor(Run, [Full], ["a"], [4096], 1)).Message);
    }

    [Fact]
    public void ResumeRefusesAnotherDeviceBuildModelOrAFileWithoutHashes()
    {
        using var dir = new TempDir();
        var file = WriteAndRead(dir, Run, Row(Full, "a", 4096, 1, 0));
        Assert.Contains("run on cuda, this run is on cpu",
            Assert.Throws<ApbException>(() => file.ResumeFor(Run with { Device = "cpu" }, [Full], ["a"], [4096], 2)).Message);
        Assert.Contains("made by apb 0.1.0+1111111, this is apb 0.1.0+2222222",
            Assert.Throws<ApbException>(() => file.ResumeFor(Run with { Engine = "0.1.0+2222222" }, [Full], ["a"], [4096], 2)).Message);
        var otherModel = Run with { Files = [new FileHash("model.safetensors", "cc" + new string('0', 62))] };
        Assert.Contains("its model.safetensors had SHA-256 aa0000000000..., this run's has cc0000000000...",
            Assert.Throws<ApbException>(() => file.ResumeFor(otherModel, [Full], ["a"], [4096], 2)).Message);
        var bare = WriteAndRead(dir, Run with { Files = [] }, Row(Full, "a", 4096, 1, 0));
        Assert.Contains("records no file hashes", Assert.Throws<ApbException>(() => bare.ResumeFor(Run, [Full], ["a"], [4096], 2)).Message);
    }
}
