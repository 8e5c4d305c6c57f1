using Apb.Bench;
using Xunit;

namespace Apb.Tests.Cli;

/// <summary>Progress on stderr: a rewritten line on a terminal, plain lines elsewhere, nothing with --quiet.</summary>
public class ProgressTests
{
    [Fact]
    public void OnATerminalOneLineIsRewrittenAndClearedElsewherePlainLines()
    {
        var term = new StringWriter();
        var p = new Progress(term, terminal: true, TimeSpan.Zero);
        p.Update("step 1/2, longer text", force: true);
        p.Update("step 2/2", force: true);
        p.Clear();
        Assert.Equal("\rstep 1/2, longer text\rstep 2/2             \r        \r", term.ToString());
        Assert.DoesNotContain('\n', term.ToString());

        var plain = new StringWriter();
        var q = new Progress(plain, terminal: false, TimeSpan.FromHours(1));
        q.Update("first", force: true);
        q.Update("throttled"); // within the interval: not written
        q.Update("last", force: true);
        q.Clear();
        Assert.Equal("first\nlast\n", plain.ToString().Replace("\r\n", "\n"));
        Assert.Equal("2/5, ETA 3.0s", Progress.Fraction(2, 5, TimeSpan.FromSeconds(2)));
        Assert.Equal("3m07s", Progress.Duration(187));
    }

    [Fact]
    public void GenerateReportsPrefillChunksOfALongPrompt()
    {
        // The tiny fixture's byte-level tokenizer: 5000 characters are thousands of tokens, three prefill chunks.
        string prompt = string.Concat(Enumerable.Repeat("ab cd ", 900));
        var (code, _, err) = CliRun.Apb("generate", "--model", Repo.TinyModel, "-n", "1", "--prompt", prompt, "--chat", "false");
        Assert.True(code == 0, err);
        var lines = err.Split('\n').Where(l => l.StartsWith("prefill: ", StringComparison.Ordinal) && l.Contains(" tokens, ")).ToList();
        Assert.True(lines.Count >= 2, err);
        Assert.StartsWith("prefill: 2048/", lines[0]);
        Assert.Contains("ETA", lines[0]);
        var quiet = CliRun.Apb("generate", "--model", Repo.TinyModel, "-n", "1", "--prompt", prompt, "--chat", "false", "--quiet");
        Assert.Equal(0, quiet.Code);
        Assert.Equal("", quiet.Err);
    }

    [Fact]
    public void EvalRulerReportsEachTaskWithTheSamplesLeft()
    {
        var (code, output, err) = CliRun.Apb("eval", "ruler", Repo.TinyModel, "--tasks", "niah_single_1,niah_single_2", "--length", "256", "--samples", "2");
        Assert.True(code == 0, err);
        Assert.Contains("niah_single_1: ", err);
        Assert.Contains("2/4, ETA", err);  // after the first task: 2 of 4 samples, an ETA for the rest
        Assert.Contains("4/4 samples in all", err);
        Assert.Contains("| length | task |", output);
        var quiet = CliRun.Apb("eval", "ruler", Repo.TinyModel, "--tasks", "niah_single_1", "--length", "256", "--samples", "1", "-q");
        Assert.Equal(0, quiet.Code);
        Assert.Equal("", quiet.Err);
    }
}
