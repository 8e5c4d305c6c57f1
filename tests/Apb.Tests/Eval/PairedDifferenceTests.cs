using Apb.Eval;
using Xunit;

namespace Apb.Tests.Eval;

/// <summary>The sample-by-sample difference against full attention, on hand-made scores whose numbers are worked out below.</summary>
public class PairedDifferenceTests
{
    static readonly StrategySpec Full = new("full", 1), Apb = new("apb", 4);

    static RulerRow Row(StrategySpec s, string task, params double[] scores) =>
        new(s, 4096, task, scores.Average(), scores.Length, 1.0, scores);

    /// <summary>A results file of these rows in <paramref name="dir"/>, as `apb eval ruler --seed` writes it.</summary>
    static string WriteRun(TempDir dir, string name, int seed, RulerRow[] rows)
    {
        string path = Path.Combine(dir.Path, name);
        using (var f = File.Create(path)) RulerHarness.WriteJson(f, new RulerRun("apb eval ruler", seed, "cpu", "m", []), rows);
        return path;
    }

    [Fact]
    public void DifferenceIsTheMeanOverTasksOfEachTasksMeanDifference()
    {
        // Task a: d = 0, -1, 0, 0 (mean -0.25, sample variance 0.25, over 4 samples 0.0625); task b: d = 0 everywhere.
        // Over the two tasks: -0.125 (-12.5 points), standard error sqrt(0.0625) / 2 = 0.125 (12.5 points).
        var full = new[] { Row(Full, "a", 1, 1, 0, 1), Row(Full, "b", 1, 0, 1, 1) };
        var apb = new[] { Row(Apb, "a", 1, 0, 0, 1), Row(Apb, "b", 1, 0, 1, 1) };
        var d = PairedDifference.Of(apb, full);
        Assert.NotNull(d);
        Assert.Equal(-12.5, d.Points, 9);
        Assert.Equal(12.5, d.StandardError, 9);
        Assert.Equal(2, d.Tasks);
        Assert.Equal(24.5, d.Interval95, 9);
    }

    [Fact]
    public void PartialCreditAndIdenticalScoresGiveZeroWithNoSpread()
    {
        var full = new[] { Row(Full, "mv", 0.75, 0.5, 1) };
        var same = new[] { Row(Apb, "mv", 0.75, 0.5, 1) };
        var d = PairedDifference.Of(same, full)!;
        Assert.Equal(0, d.Points, 9);
        Assert.Equal(0, d.StandardError, 9);
    }

    [Fact]
    public void ATaskMovesWhenItsMeanMovesByWhatATableShows()
    {
        // cwe-like fractional scores: 0.3 against 0.1 + 0.2 differ by 5.6e-17 in doubles, which is no move (the
        // command listed such a task as "cwe -+0.0"); one sample of four from 1 to 0 is -25 points.
        var full = new[] { Row(Full, "cwe", 0.1 + 0.2, 0.5), Row(Full, "a", 1, 1, 0, 1) };
        var apb = new[] { Row(Apb, "cwe", 0.3, 0.5), Row(Apb, "a", 1, 0, 0, 1) };
        Assert.NotEqual(0, PairedDifference.Of([apb[0]], full)!.Points);
        var moved = PairedDifference.Moved([new PairedDifference.Pair(apb, full)]);
        Assert.Equal("a", Assert.Single(moved).Task);
        Assert.Equal(-25, moved[0].Move.Points, 9);
        // One of four samples flipped: d = (0, -1, 0, 0), s^2 = 0.25, standard error sqrt(0.25 / 4) = 0.25 -> ± 49.0.
        Assert.Equal("-25.0 ± 49.0", moved[0].Move.Text);
        // Changed samples: cwe's first (0.3 against 0.30000000000000004) and a's second.
        Assert.Equal(2, PairedDifference.ChangedSamples([new PairedDifference.Pair(apb, full)]));
        // Over both tasks: (-25 + ~0) / 2 points, standard error 100 x sqrt(0.0625) / 2, as the first test works out.
        Assert.Equal("-12.5 ± 24.5", PairedDifference.Of(apb, full)!.Text);
    }

    [Fact]
    public void RowsWithoutScoresOrOfOtherCountsDoNotPair()
    {
        var full = new[] { Row(Full, "a", 1, 1, 0, 1) };
        Assert.Null(PairedDifference.Of([new RulerRow(Apb, 4096, "a", 0.5, 4, 1.0)], full));   // no per-sample scores
        Assert.Null(PairedDifference.Of([Row(Apb, "a", 1, 0, 1)], full));                       // 3 samples against 4
        Assert.Null(PairedDifference.Of([Row(Apb, "other", 1, 1, 1, 1)], full));                // no such task in full
    }

    [Fact]
    public void TheTableAddsAMinusFullRowWhereFullRanOnTheSameSamples()
    {
        var rows = new[] { Row(Full, "a", 1, 1, 0, 1), Row(Full, "b", 1, 0, 1, 1), Row(Apb, "a", 1, 0, 0, 1), Row(Apb, "b", 1, 0, 1, 1) };
        string table = RulerHarness.FormatTable(rows);
        var line = table.Split('\n').Single(l => l.Contains("minus full"));
        Assert.Equal("| 4096 | minus full (paired, 95 %) | | | | -12.5 ± 24.5 | |", line.TrimEnd());
        // Without full attention in the run there is nothing to subtract.
        Assert.DoesNotContain("minus full", RulerHarness.FormatTable(rows[2..]));
    }

    [Fact]
    public void RowsReadBackFromTheHarnessJsonPairAsTheyDidInMemory()
    {
        using var dir = new TempDir();
        var run = new RulerRun("apb eval ruler", 0, "cpu", "m", []);
        string Write(string name, RulerRow[] rows)
        {
            string path = Path.Combine(dir.Path, name);
            using (var f = File.Create(path)) RulerHarness.WriteJson(f, run, rows);
            return path;
        }
        var full = new[] { Row(Full, "a", 1, 1, 0, 1), Row(Full, "b", 1, 0, 1, 1) };
        var apb = new[] { Row(Apb, "a", 1, 0, 0, 1), Row(Apb, "b", 1, 0, 1, 1) };
        string pf = Write("full.json", full), pa = Write("apb.json", [.. full, .. apb]);
        var d = PairedDifference.Of(PairedDifference.Read(pa, "apb").Rows, PairedDifference.Read(pf, "full").Rows)!;
        Assert.Equal(-12.5, d.Points, 9);
        Assert.Equal(12.5, d.StandardError, 9);

        // A file from before the scores were kept, another strategy, a file that is not one: each says what is wrong.
        string old = Path.Combine(dir.Path, "old.json");
        File.WriteAllText(old, """{"results": [{"strategy": "full", "ranks": 1, "length": 4096, "task": "a", "accuracy": 1, "samples": 4, "seconds": 1}]}""");
        Assert.Contains("no per-sample \"scores\"", Assert.Throws<ApbException>(() => PairedDifference.Read(old, "full")).Message);
        Assert.Contains("no rows of strategy star", Assert.Throws<ApbException>(() => PairedDifference.Read(pf, "star")).Message);
        File.WriteAllText(old, "[1, 2]");
        Assert.Contains("not an `apb eval ruler` JSON file", Assert.Throws<ApbException>(() => PairedDifference.Read(old, "full")).Message);
    }
    [Fact]
    public void TheCommandPairsAnotherRunsStrategyAndRefusesAnotherSeed()
    {
        // Full attention from one run and APB from another (the GPU evals that timed out after full and were re-run
        // for APB alone): --other-strategy names OTHER's rows.
        using var dir = new TempDir();
        string Write(string name, int seed, RulerRow[] rows) => WriteRun(dir, name, seed, rows);
        string pf = Write("full.json", 0, [Row(Full, "a", 1, 1, 0, 1), Row(Full, "b", 1, 0, 1, 1)]);
        string pa = Write("apb.json", 0, [Row(Apb, "a", 1, 0, 0, 1), Row(Apb, "b", 1, 0, 1, 1)]);
        var (code, output, err) = CliRun.Apb("eval", "paired", pf, pa, "--other-strategy", "apb");
        Assert.True(code == 0, err);
        Assert.Contains("4096: " + pa + " minus " + pf + ", apb against full, 2 tasks: -12.5 ± 24.5 (95 %); tasks that moved: a -25.0 ± 49.0", output);
        // Without the option OTHER's rows are full's too, and this file has none.
        Assert.Contains("no rows of strategy full", CliRun.Apb("eval", "paired", pf, pa).Err);

        string other = Write("seed1.json", 1, [Row(Apb, "a", 1, 0, 0, 1)]);
        var refused = CliRun.Apb("eval", "paired", pf, other, "--other-strategy", "apb");
        Assert.NotEqual(0, refused.Code);
        Assert.Contains("--seed 1", refused.Err);
        Assert.Contains("run both with one seed", refused.Err);
    }
    [Fact]
    public void TasksPairsTheNamedTasksAloneAndRefusesATaskAFileLacks()
    {
        // Task a alone: d = 0, -1, 0, 0: -25.0 points, standard error sqrt(0.25 / 4) = 0.25, interval 1.96 x 25 = 49.0.
        using var dir = new TempDir();
        string pf = WriteRun(dir, "full.json", 0, [Row(Full, "a", 1, 1, 0, 1), Row(Full, "b", 1, 0, 1, 1)]);
        string pa = WriteRun(dir, "apb.json", 0, [Row(Apb, "a", 1, 0, 0, 1), Row(Apb, "b", 1, 0, 1, 1)]);
        var (code, output, err) = CliRun.Apb("eval", "paired", pf, pa, "--other-strategy", "apb", "--tasks", "a");
        Assert.True(code == 0, err);
        Assert.Contains("apb against full, 1 tasks: -25.0 ± 49.0 (95 %)", output);
        (code, output, err) = CliRun.Apb("eval", "paired", pf, pa, "--other-strategy", "apb", "--tasks", "b");
        Assert.True(code == 0, err);
        Assert.Contains("1 tasks: 0.0 ± 0.0 (95 %); tasks that moved: none", output);

        var refused = CliRun.Apb("eval", "paired", pf, pa, "--other-strategy", "apb", "--tasks", "a,vt");
        Assert.Equal(1, refused.Code);
        Assert.Contains("--tasks vt: " + pf + " has no row of that task (it has a, b)", refused.Err);
        Assert.Contains("--tasks names no task", CliRun.Apb("eval", "paired", pf, pa, "--tasks", ",").Err);
    }

    [Fact]
    public void PairedSaysWhatElseDiffersBetweenTheFiles()
    {
        // Two builds on two devices, and another weights file: each said beside the result; the same provenance says nothing.
        using var dir = new TempDir();
        string Write(string name, string device, string engine, string weightsHash, RulerRow[] rows)
        {
            string path = Path.Combine(dir.Path, name);
            using (var f = File.Create(path))
                RulerHarness.WriteJson(f, new RulerRun("apb eval ruler", 0, device, "m",
                    [new FileHash("model.safetensors", weightsHash), new FileHash("tokenizer.json", "ab12")], Engine: engine), rows);
            return path;
        }
        RulerRow[] rows = [Row(Full, "a", 1, 1, 0, 1)];
        string a = Write("a.json", "cuda", "0.1.0+aaaa", "1111111111111111", rows);
        string b = Write("b.json", "cpu", "0.1.0+bbbb", "2222222222222222", rows);
        var (code, output, err) = CliRun.Apb("eval", "paired", a, b);
        Assert.True(code == 0, err);
        Assert.Contains("note: the files were made differently (build: apb 0.1.0+aaaa against apb 0.1.0+bbbb; device: cuda against cpu; " +
                        "model.safetensors: 111111111111... against 222222222222...)", output);
        Assert.DoesNotContain("tokenizer.json", output);
        string same = Write("same.json", "cuda", "0.1.0+aaaa", "1111111111111111", rows);
        Assert.DoesNotContain("note:", CliRun.Apb("eval", "paired", a, same).Out);
    }

    [Fact]
    public void SamplesPairsTheFirstSamplesOfRunsOfDifferentLengths()
    {
        // A 2-sample APB run against the start of a 4-sample full run of the same seed: the same first two samples.
        using var dir = new TempDir();
        string Write(string name, RulerRow[] rows) => WriteRun(dir, name, 0, rows);
        string pf = Write("full.json", [Row(Full, "a", 1, 1, 0, 0)]), pa = Write("apb.json", [Row(Apb, "a", 1, 0)]);
        Assert.Contains("no task of apb against full pairs up", CliRun.Apb("eval", "paired", pf, pa, "--other-strategy", "apb").Out);
        // d = 0, -1 over the first two: -50 points, standard error sqrt(0.5 / 2) = 0.5.
        var (code, output, err) = CliRun.Apb("eval", "paired", pf, pa, "--other-strategy", "apb", "--samples", "2");
        Assert.True(code == 0, err);
        Assert.Contains("1 tasks: -50.0 ± 98.0 (95 %)", output);
        var bad = CliRun.Apb("eval", "paired", pf, pa, "--other-strategy", "apb", "--samples", "3");
        Assert.Contains("--samples 3: " + pa + " has 2 samples of a at 4096; pair at most that many", bad.Err);
    }

    [Fact]
    public void PairsOfSeveralSeedsPoolTheirSamplesTaskByTask()
    {
        // Seed 0: task a d = 0, -1, 0, 0; seed 1: task a d = -1, 0, -1, 0. Pooled, task a's 8 differences have mean -3/8
        // and sample variance (3 x (5/8)^2 + 5 x (3/8)^2) / 7 = 15/56, so a standard error of sqrt(15/56 / 8). Task b
        // is only in seed 0's pair (d = 0 x 4): it adds its own samples alone.
        var full0 = new[] { Row(Full, "a", 1, 1, 0, 1), Row(Full, "b", 1, 0, 1, 1) };
        var apb0 = new[] { Row(Apb, "a", 1, 0, 0, 1), Row(Apb, "b", 1, 0, 1, 1) };
        var full1 = new[] { Row(Full, "a", 1, 1, 1, 0) };
        var apb1 = new[] { Row(Apb, "a", 0, 1, 0, 0) };
        var d = PairedDifference.Of([new PairedDifference.Pair(apb0, full0), new PairedDifference.Pair(apb1, full1)])!;
        Assert.Equal(2, d.Tasks);
        Assert.Equal(100 * (-3.0 / 8) / 2, d.Points, 9);
        Assert.Equal(100 * Math.Sqrt(15.0 / 56 / 8) / 2, d.StandardError, 9);
        Assert.Equal(3, PairedDifference.ChangedSamples([new PairedDifference.Pair(apb0, full0), new PairedDifference.Pair(apb1, full1)]));
        var moved = PairedDifference.Moved([new PairedDifference.Pair(apb0, full0), new PairedDifference.Pair(apb1, full1)]);
        Assert.Equal("a", Assert.Single(moved).Task);
        Assert.Equal(-37.5, moved[0].Move.Points, 9);
        // One pair is the two-argument form, bit for bit.
        Assert.Equal(PairedDifference.Of(apb0, full0), PairedDifference.Of([new PairedDifference.Pair(apb0, full0)]));
    }

    [Fact]
    public void TheCommandPoolsPairsOfFilesAndRefusesAnOddCountOrARepeatedSeed()
    {
        using var dir = new TempDir();
        string Write(string name, int seed, RulerRow[] rows) => WriteRun(dir, name, seed, rows);
        string f0 = Write("full0.json", 0, [Row(Full, "a", 1, 1, 0, 1)]), a0 = Write("apb0.json", 0, [Row(Apb, "a", 1, 0, 0, 1)]);
        string f1 = Write("full1.json", 1, [Row(Full, "a", 1, 1, 1, 0)]), a1 = Write("apb1.json", 1, [Row(Apb, "a", 0, 1, 0, 0)]);
        var (code, output, err) = CliRun.Apb("eval", "paired", f0, a0, f1, a1, "--other-strategy", "apb");
        Assert.True(code == 0, err);
        // Task a alone: -37.5 points, standard error sqrt(15/56 / 8) = 0.183 -> ± 35.9.
        Assert.Contains($"4096: pooled over 2 pairs (seeds 0, 1), {a0} minus {f0} + {a1} minus {f1}, apb against full, 1 tasks: -37.5 ± 35.9 (95 %)", output);
        Assert.Contains("samples whose score changed: 3", output);

        var odd = CliRun.Apb("eval", "paired", f0, a0, f1, "--other-strategy", "apb");
        Assert.NotEqual(0, odd.Code);
        Assert.Contains("3 files: give them in pairs, REFERENCE then OTHER", odd.Err);
        var twice = CliRun.Apb("eval", "paired", f0, a0, f0, a0, "--other-strategy", "apb");
        Assert.NotEqual(0, twice.Code);
        Assert.Contains("were both run with --seed 0: pairs to pool must be of different seeds", twice.Err);
    }

    [Fact]
    public void AFileStillBeingWrittenCanBePaired()
    {
        // `apb eval ruler --json` keeps its file open for the whole run (every finished row rewritten into it) and lets
        // others read it; reading it then must not ask for a share the writer refuses ("used by another process").
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "running.json");
        using var writer = global::Apb.Cli.Commands.CommonOptions.CreateOutput(path, "--json");
        var rows = new[] { Row(Full, "a", 1, 1, 0, 1) };
        RulerHarness.RewriteJson(writer, new RulerRun("apb eval ruler", 0, "cpu", "m", []), rows, complete: false);
        var file = PairedDifference.Read(path, "full");
        Assert.Single(file.Rows);
        Assert.Equal(0, file.Seed);
    }
}
