using Xunit;

namespace Apb.Tests.Cli;

/// <summary>
/// Issue #17's flag vocabulary: -s is --strategy/--strategies, -q is --quiet, --lengths (--length, --contexts) for
/// lengths, --out - for stdout, one --ranks default; a misspelt flag gets one line with a suggestion.
/// </summary>
public class FlagVocabularyTests
{
    static string Tiny => Repo.TinyModel;

    [Fact]
    public void MaxTokensIsAnAliasOfMaxNewTokens()
    {
        var (code, _, err) = CliRun.Apb("generate", "--model", Tiny, "--max-tokens", "3", "--prompt", "abc", "--chat", "false");
        Assert.True(code == 0, err);
        Assert.Contains("decode: 3 tokens", err);
    }

    [Theory]
    [InlineData("--max-tokns", "--max-tokens", "generate")]
    [InlineData("--temprature", "--temperature", "generate")]
    [InlineData("--strategys", "--strategy", "eval", "ruler")]
    [InlineData("--lenghts", "--lengths", "bench", "prefill")]
    public void AMisspeltFlagGetsOneLineWithTheNearestName(string given, string suggested, params string[] command)
    {
        var run = CliRun.Apb([.. command, given, "3"]);
        HostileCliTests.AssertUserError(run, $"unknown option '{given}'");
        Assert.Contains($"did you mean {suggested}?", run.Err);
        Assert.DoesNotContain("Usage:", run.Out + run.Err); // not the whole help text
        Assert.Single(run.Err.Trim().Split('\n'));
    }

    [Fact]
    public void AMisspeltCommandGetsTheNearestCommand()
    {
        var run = CliRun.Apb("genrate");
        HostileCliTests.AssertUserError(run, "unknown command 'genrate'");
        Assert.Contains("did you mean generate?", run.Err);
    }

    [Fact]
    public void DashSIsTheStrategyEverywhereAndAnOldSampleCountSaysSo()
    {
        var gen = CliRun.Apb("generate", "--model", Tiny, "-s", "ring", "-n", "1", "--prompt", "one two three four five six", "--chat", "false");
        Assert.True(gen.Code == 0, gen.Err);
        Assert.Contains("strategy ring x4", gen.Err); // --ranks default: 4 for a parallel strategy
        HostileCliTests.AssertUserError(CliRun.Apb("eval", "ruler", "--model", Tiny, "-s", "20"), "the sample count is --samples 20");
    }

    [Fact]
    public void DashQIsQuietAndSilencesStderr()
    {
        var (code, output, err) = CliRun.Apb("generate", "--model", Tiny, "-q", "-n", "2", "--prompt", "abc", "--chat", "false");
        Assert.True(code == 0, err);
        Assert.Equal("", err);
        Assert.False(string.IsNullOrWhiteSpace(output));
        // The old -q QUESTION now reads QUESTION as the model folder: the error says what -q is.
        HostileCliTests.AssertUserError(CliRun.Apb("generate", "-q", "where is the key?"), "-q is --quiet; a question goes in --query");
    }

    [Theory]
    [InlineData("--lengths")]
    [InlineData("--length")]
    [InlineData("--contexts")]
    [InlineData("-l")]
    public void EveryLengthSpellingWorksForBenchDecode(string flag)
    {
        var (code, output, err) = CliRun.Apb("bench", "decode", "--shape", "tiny", flag, "24", "--tokens", "1", "--warmup", "0", "-q");
        Assert.True(code == 0, err);
        Assert.Contains("| apb | cpu | 24 |", output);
        Assert.Equal("", err);
    }

    [Fact]
    public void OutDashWritesLogitsJsonToStdout()
    {
        var (code, output, err) = CliRun.Apb("logits", "--model", Tiny, "--ids", "1,2,3", "--out", "-");
        Assert.True(code == 0, err);
        using var doc = System.Text.Json.JsonDocument.Parse(output);
        Assert.Equal(3, doc.RootElement.GetProperty("logits").GetArrayLength());
        Assert.Contains("3 positions x", err); // the summary moved to stderr
        Assert.False(File.Exists("-"));
    }

    [Fact]
    public void OutDashWritesEvalSamplesToStdout()
    {
        var (code, output, err) = CliRun.Apb("eval", "generate", "--tokenizer", Tiny, "--tasks", "niah_single_1", "--length", "256", "--samples", "2", "--out", "-");
        Assert.True(code == 0, err);
        Assert.Equal(2, output.Trim().Split('\n').Length);
    }

    [Fact]
    public void OutDashIsRefusedWhereABenchWritesFiles()
    {
        HostileCliTests.AssertUserError(CliRun.Apb("bench", "decode", "--shape", "tiny", "--lengths", "16", "--out", "-"), "--out -: bench decode prints its table on stdout");
        HostileCliTests.AssertUserError(CliRun.Apb("bench", "prefill", "--shape", "tiny", "--lengths", "16", "--out", "-"), "--out -: bench prefill");
    }

    [Fact]
    public void TheModelFolderMayBeTheFirstArgument()
    {
        var gen = CliRun.Apb("generate", Tiny, "-n", "2", "--prompt", "abc", "--chat", "false");
        Assert.True(gen.Code == 0, gen.Err);
        Assert.Contains(Path.GetFullPath(Tiny), gen.Err);
        var inspect = CliRun.Apb("inspect", Tiny);
        Assert.True(inspect.Code == 0, inspect.Err);
        Assert.Contains("layers", inspect.Out);
        HostileCliTests.AssertUserError(CliRun.Apb("inspect", Tiny, "--model", Repo.EmbeddedModel), "two models given");
        HostileCliTests.AssertUserError(CliRun.Apb("serve", "/no/such/model/dir"), "the model folder '/no/such/model/dir' does not exist");
    }
}
