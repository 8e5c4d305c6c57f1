using Xunit;

namespace Apb.Tests.Cli;

/// <summary>Issue #17's wrong or unhelpful outputs, one test each, through the `apb` entry point.</summary>
public class HonestOutputTests
{
    static string Tiny => Repo.TinyModel;

    [Fact]
    public void OneGeneratedTokenHasNoDecodeRate()
    {
        var (code, _, err) = CliRun.Apb("generate", "--model", Tiny, "-n", "1", "--prompt", "abc", "--chat", "false");
        Assert.True(code == 0, err);
        Assert.Contains("decode: 1 token (from the prefill's logits; no decode step to time)", err);
        // A rate of exactly 0.0 (a prefill rate such as "910.0 tok/s" is not one: the substring alone failed on it).
        Assert.DoesNotMatch(@"(?<![0-9.])0\.0 tok/s", err);
    }

    [Fact]
    public void BenchDecodeOnTheCpuPrintsNoFloorAndNoNaN()
    {
        var (code, output, err) = CliRun.Apb("bench", "decode", "--shape", "tiny", "--lengths", "16", "--tokens", "2", "--warmup", "0");
        Assert.True(code == 0, err);
        Assert.DoesNotContain("NaN", output + err);
        Assert.DoesNotContain("floor", err); // the per-context log line: no HBM floor on a CPU
        Assert.Contains("floor: GPU runs only", output);
        Assert.Matches(@"tiny: [0-9.]+K parameters", err); // not "0.00B"
    }

    [Fact]
    public void BenchPrefillOnTheCpuNamesNoGpuPeakAndDrawsNoZeroBillion()
    {
        using var tmp = new TempDir();
        var (code, output, err) = CliRun.Apb("bench", "prefill", "--shape", "tiny", "--lengths", "32", "--strategies", "full", "--query", "4",
            "--warmup", "0", "--repeats", "1", "--no-profile", "--out", tmp.File("b"));
        Assert.True(code == 0, err);
        Assert.DoesNotContain("TFLOP/s", output);
        Assert.Contains("floor fraction: GPU runs only", output);
        Assert.DoesNotContain("0.00B", err);
        Assert.Contains("case 0/1: full n=32", err); // progress: which case starts
    }

    [Theory]
    [InlineData]
    [InlineData("--shape", "small")]
    public void BenchPrefillOnTheCpuRefusesWhatCannotFitOrFinishAtOnce(params string[] extra)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var run = CliRun.Apb(["bench", "prefill", "--device", "cpu", .. extra]);
        HostileCliTests.AssertUserError(run, extra.Length == 0 ? "needs 32.1 GB for its fp32 weights alone" : "past the 2h00m a CPU bench may take");
        Assert.Contains("--shape tiny", run.Err);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"refused after {sw.Elapsed.TotalSeconds:F0} s: before building anything it should be quick");
    }

    [Fact]
    public void EveryHelpTextIsTheSameOnEveryCall()
    {
        // A default computed per call (a random seed, a time stamp) would make --help differ between two calls.
        foreach (var path in CommandPaths())
        {
            var a = CliRun.Apb([.. path, "--help"]);
            var b = CliRun.Apb([.. path, "--help"]);
            Assert.True(a.Code == 0, string.Join(' ', path) + ": " + a.Err);
            Assert.Equal(a.Out, b.Out);
        }
    }

    /// <summary>Every command and subcommand, as the words that name it (from `apb --help` and each group's help).</summary>
    internal static List<string[]> CommandPaths()
    {
        var paths = new List<string[]>();
        foreach (var name in Commands(CliRun.Apb("--help").Out))
        {
            var subs = Commands(CliRun.Apb(name, "--help").Out).ToList();
            if (subs.Count == 0) paths.Add([name]);
            else paths.AddRange(subs.Select(s => new[] { name, s }));
        }
        return paths;
    }

    static IEnumerable<string> Commands(string help)
    {
        int at = help.IndexOf("Commands:", StringComparison.Ordinal);
        if (at < 0) yield break;
        foreach (var line in help[(at + 9)..].Split('\n'))
        {
            if (line.Trim().Length == 0) break;
            if (line.StartsWith("  ", StringComparison.Ordinal) && !line.StartsWith("   ", StringComparison.Ordinal))
                yield return line.Trim().Split(' ')[0];
        }
    }

    [Fact]
    public void ServeRefusesTimingsInsteadOfIgnoringThem() =>
        HostileCliTests.AssertUserError(CliRun.Apb("serve", "--model", Tiny, "--timings", "--port", "0"), "--timings prints one request's per-rank phases");

    [Fact]
    public void TheFallbackNoteNamesTheFlag()
    {
        var (code, _, err) = CliRun.Apb("generate", "--model", Tiny, "--strategy", "apb", "--ranks", "2", "-n", "1", "--prompt", "one two three four", "--chat", "false");
        Assert.True(code == 0, err);
        Assert.Contains("(--fallback-below)", err);
        Assert.DoesNotContain("StrategyOptions", err);
    }
}
