using Apb.Eval;
using Xunit;

namespace Apb.Tests.Eval;

/// <summary>`apb eval show`: a results file's table and provenance printed again, and files that are not one refused.</summary>
public class EvalShowTests
{
    static RulerRow Row(StrategySpec s, string task, params double[] scores) =>
        new(s, 4096, task, scores.Average(), scores.Length, 2.5, scores);

    [Fact]
    public void ShowPrintsEachFilesTableWithWhatMadeIt()
    {
        using var dir = new TempDir();
        var full = new StrategySpec("full", 1);
        var apb = new StrategySpec("apb", 4, "l_p 512");
        string path = Path.Combine(dir.Path, "run.json");
        using (var f = File.Create(path))
            RulerHarness.WriteJson(f, new RulerRun("apb eval ruler --seed 7 --strategies full,apb", 7, "cpu", "m", []),
                [Row(full, "a", 1, 1, 0, 1), Row(full, "b", 1, 0, 1, 1), Row(apb, "a", 1, 0, 0, 1), Row(apb, "b", 1, 0, 1, 1)]);

        var (code, output, err) = CliRun.Apb("eval", "show", path, path);
        Assert.True(code == 0, err);
        Assert.Contains($"{path}: 4 rows; seed 7, cpu, apb ", output);
        Assert.Contains("  apb eval ruler --seed 7 --strategies full,apb", output);
        Assert.Contains("| length | task | samples | full | full s | apb x4 (l_p 512) | apb x4 (l_p 512) s |", output);
        Assert.Contains("| 4096 | a | 4 | 75.0 | 2.5 | 50.0 | 2.5 |", output);
        // Means: full (75 + 75) / 2, APB (50 + 75) / 2; APB minus full paired: -12.5 ± 24.5 (PairedDifferenceTests).
        Assert.Contains("| 4096 | **mean** | | **75.0** | 5.0 | **62.5** | 5.0 |", output);
        Assert.Contains("| 4096 | minus full (paired, 95 %) | | | | -12.5 ± 24.5 | |", output);
        Assert.Equal(2, output.Split("| 4096 | **mean** |").Length - 1);   // both files printed
    }

    [Fact]
    public void ShowRefusesWhatIsNotAResultsFile()
    {
        using var dir = new TempDir();
        string bad = Path.Combine(dir.Path, "bad.json");
        File.WriteAllText(bad, "[1, 2]");
        var (code, _, err) = CliRun.Apb("eval", "show", bad);
        Assert.NotEqual(0, code);
        Assert.Contains("not an `apb eval ruler` JSON file", err);
        var missing = CliRun.Apb("eval", "show", Path.Combine(dir.Path, "none.json"));
        Assert.NotEqual(0, missing.Code);
        Assert.Contains("none.json: cannot read it", missing.Err);
    }
}
