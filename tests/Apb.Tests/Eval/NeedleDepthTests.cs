using Apb.Eval;
using Xunit;

namespace Apb.Tests.Eval;

/// <summary>
/// Accuracy by the needle's depth: where a sample's needle is placed, how a row's scores split by it, and `apb eval depth`
/// on real samples, whose parts must add back up to each row's accuracy.
/// </summary>
public class NeedleDepthTests
{
    static EvalSample Sample(string task, string context, params string[] answers) => new(task, 4096, 0, context, "q", answers);

    [Fact]
    public void TheNeedlesOwnSentencePlacesTheSampleNotAnEarlierMentionOfItsValue()
    {
        // 100 characters; "7" stands at 10 as a haystack word, its needle sentence at 60: third quarter.
        string context = new string('.', 10) + "7" + new string('.', 49) + "is: 7." + new string('.', 34);
        Assert.Equal(100, context.Length);
        Assert.Equal(2, NeedleDepth.Part(Sample("niah_single_1", context, "7")));
        // Without a needle sentence (vt's variables), the value's first place: 10 of 100, first quarter.
        Assert.Equal(0, NeedleDepth.Part(Sample("vt", context.Replace("is: 7.", "......"), "7")));
        // The last character belongs to the last quarter, not a fifth bin.
        Assert.Equal(3, NeedleDepth.Part(Sample("niah_single_1", new string('.', 99) + "x", "x")));
        // No place: an answer the context lacks, and the word-counting tasks, whose answers are everywhere.
        Assert.Null(NeedleDepth.Part(Sample("niah_single_1", context, "8")));
        Assert.Null(NeedleDepth.Part(Sample("cwe", context, "7")));
        Assert.Null(NeedleDepth.Part(Sample("fwe", context, "7")));
        // In eighths (one part per rank on 8 ranks): 60 of 100 is the fifth (4), the last character the eighth (7).
        Assert.Equal(4, NeedleDepth.Part(Sample("niah_single_1", context, "7"), 8));
        Assert.Equal(7, NeedleDepth.Part(Sample("niah_single_1", new string('.', 99) + "x", "x"), 8));
        Assert.Contains("2 to 16 parts", Assert.Throws<ApbException>(() => NeedleDepth.Part(Sample("vt", context, "7"), 1)).Message);
    }

    [Fact]
    public void ARowsScoresSplitByPartWithEmptyPartsMarked()
    {
        // Samples 0..4 with needles in quarters 0, 0, 1, 3, and none (left out); scores 1, 0, 1, 0.5, 1.
        string At(int q) => new string('.', 25 * q) + "is: v." + new string('.', 94 - 25 * q);
        var samples = new[] { At(0), At(0), At(1), At(3), new string('.', 100) }.Select(c => Sample("niah_single_2", c, "v")).ToArray();
        var row = new RulerRow(new StrategySpec("apb", 4), 4096, "niah_single_2", 0.7, 5, 1.0, [1, 0, 1, 0.5, 1]);
        var d = NeedleDepth.Of(row, i => samples[i]);
        Assert.Equal(4, d.Placed);
        Assert.Equal([(0.5, 2), (1.0, 1)], d.Parts.Take(2));
        Assert.Equal(0, d.Parts[2].Count);
        Assert.True(double.IsNaN(d.Parts[2].Mean));
        Assert.Equal((0.5, 1), d.Parts[3]);
        string table = NeedleDepth.Format([d]);
        Assert.Contains("| strategy | task | length | needle at 0-25 % | 25-50 % | 50-75 % | 75-100 % |", table);
        Assert.Contains("| apb x4 | niah_single_2 | 4096 | 0.50 (2) | 1.00 (1) | - | 0.50 (1) |", table);

        // The same samples in eighths: quarter q is eighth 2q, so the other eighths are empty.
        var e = NeedleDepth.Of(row, i => samples[i], 8);
        Assert.Equal([2, 0, 1, 0, 0, 0, 1, 0], e.Parts.Select(p => p.Count));
        Assert.Contains("| needle at 0-12.5 % | 12.5-25 % | 25-37.5 % |", NeedleDepth.Format([e]));
        Assert.Throws<ArgumentException>(() => NeedleDepth.Format([d, e]));

        var old = row with { Scores = null };
        Assert.Contains("no per-sample scores", Assert.Throws<ApbException>(() => NeedleDepth.Of(old, i => samples[i])).Message);
    }

    [Fact]
    public void TheCommandRemakesTheRunsSamplesAndItsPartsAddUpToEachRowsAccuracy()
    {
        // Run 9 of the embedded model at 4K on the CPU (20 samples a task, full and APB x4), committed with its scores.
        string file = Path.Combine(Repo.Root, "bench", "results", "train-run9-20261205", "cpu-4k", "new-4k.json");
        var results = RulerResults.Read(file);
        var (code, output, err) = CliRun.Apb("eval", "depth", file, "--tokenizer", Repo.EmbeddedModel);
        Assert.True(code == 0, err);
        Assert.Contains("cwe, fwe left out", output);
        var lines = output.Split('\n').Where(l => l.StartsWith("| full |") || l.StartsWith("| apb x4")).ToList();
        var rows = results.Rows.Where(r => RulerTasks.HasNeedle(r.Task)).ToList();
        Assert.Equal(rows.Count, lines.Count);
        foreach (var r in rows)
        {
            var cells = Cells(lines, r, 4).Where(c => c.Count > 0).ToList();
            // Every needle task's sample has a place (the generator writes the value into the context), so the counts
            // are the row's samples and the count-weighted means its accuracy (to the table's two decimals).
            Assert.Equal(r.Samples, cells.Sum(c => c.Count));
            Assert.Equal(r.Accuracy, cells.Sum(c => c.Mean * c.Count) / r.Samples, 0.005 + 1e-9);
        }
        // Those sums hold however the scores are binned; the bins themselves, as tools/needle_depth.py (the Python
        // script this command replaced, an independent reading of the samples' JSON) gave them for this file:
        Assert.Contains("| full | niah_single_1 | 4096 | 1.00 (4) | 1.00 (6) | 1.00 (4) | 1.00 (6) |", output);
        Assert.Contains("| apb x4 (retaining heads) | niah_multikey_3 | 4096 | 1.00 (3) | 0.88 (8) | 0.75 (4) | 1.00 (5) |", output);

        // In eighths (--parts 8), each quarter's samples are its two eighths'.
        var (code8, output8, err8) = CliRun.Apb("eval", "depth", file, "--tokenizer", Repo.EmbeddedModel, "--parts", "8");
        Assert.True(code8 == 0, err8);
        var lines8 = output8.Split('\n').Where(l => l.StartsWith("| full |") || l.StartsWith("| apb x4")).ToList();
        foreach (var r in rows)
        {
            var quarters = Cells(lines, r, 4);
            var eighths = Cells(lines8, r, 8);
            Assert.Equal(quarters.Select(q => q.Count), Enumerable.Range(0, 4).Select(q => eighths[2 * q].Count + eighths[2 * q + 1].Count));
        }
        Assert.Contains("2 to 16 parts", CliRun.Apb("eval", "depth", file, "--tokenizer", Repo.EmbeddedModel, "--parts", "1").Err);

        // Another seed, another tokenizer, a strategy the file lacks: refused, saying what to do.
        Assert.Contains("Leave --seed out", CliRun.Apb("eval", "depth", file, "--seed", "1", "--tokenizer", Repo.EmbeddedModel).Err);
        Assert.Contains("give the run's model folder with --tokenizer", CliRun.Apb("eval", "depth", file, "--tokenizer", Repo.TinyModel).Err);
        Assert.Contains("no rows of strategy star (it has: full, apb)", CliRun.Apb("eval", "depth", file, "--strategy", "star", "--tokenizer", Repo.EmbeddedModel).Err);
    }

    /// <summary>The (mean, count) cells of <paramref name="row"/>'s line in a depth table of <paramref name="parts"/> parts; "-" is (NaN, 0).</summary>
    static List<(double Mean, int Count)> Cells(List<string> lines, RulerRow row, int parts) =>
        [.. lines.Single(l => l.StartsWith($"| {row.Strategy} | {row.Task} |")).Split('|').Skip(4).Take(parts).Select(c => c.Trim())
            .Select(c => c == "-" ? (double.NaN, 0) : (double.Parse(c[..c.IndexOf(' ')]), int.Parse(c[(c.IndexOf('(') + 1)..c.IndexOf(')')])))];

    [Fact]
    public void FilesItCannotPlaceAreRefusedWithTheReason()
    {
        using var dir = new TempDir();
        string Write(string name, string json)
        {
            string path = Path.Combine(dir.Path, name);
            File.WriteAllText(path, json);
            return path;
        }
        string Row(string task, int length) =>
            $$"""{"strategy": "full", "ranks": 1, "length": {{length}}, "task": "{{task}}", "accuracy": 1, "samples": 2, "seconds": 1, "scores": [1, 1]}""";
        var e = Repo.EmbeddedModel;
        string words = Write("words.json", $$"""{"seed": 0, "results": [{{Row("cwe", 4096)}}, {{Row("fwe", 4096)}}]}""");
        Assert.Contains("cwe and fwe only", CliRun.Apb("eval", "depth", words, "--tokenizer", e).Err);
        string noSeed = Write("noseed.json", $$"""{"results": [{{Row("niah_single_1", 1024)}}]}""");
        var (code, _, err) = CliRun.Apb("eval", "depth", noSeed, "--tokenizer", e);
        Assert.NotEqual(0, code);
        Assert.Contains("give it with --seed", err);
        Assert.Equal(0, CliRun.Apb("eval", "depth", noSeed, "--seed", "0", "--tokenizer", e).Code);
        // A length no sample can be made at: the generator's own message, not a wrapped exception.
        string tiny = Write("tiny.json", $$"""{"seed": 0, "results": [{{Row("niah_single_1", 8)}}]}""");
        (code, _, err) = CliRun.Apb("eval", "depth", tiny, "--tokenizer", e);
        Assert.NotEqual(0, code);
        Assert.Contains("too short for any task", err);
        Assert.DoesNotContain("AggregateException", err);
    }
}
