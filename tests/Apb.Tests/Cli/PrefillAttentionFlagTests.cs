using System.Text.Json;
using Xunit;

namespace Apb.Tests.Cli;

/// <summary>
/// --prefill-attention: fp8 (QK8, S = Q K^T from e4m3 q and k) runs on the CPU as the reference rounding and on a
/// Hopper GPU as its kernel; every command that takes it says so in what it prints or writes. A model whose head dim
/// QK8 does not cover, a value it does not know, and a flag aimed at a remote server are refused with what to do. The
/// GPU side (the switch reaching the kernel, and refusing a GPU without it) is what the GPU tests and benches run.
/// </summary>
public class PrefillAttentionFlagTests
{
    static string Embedded => Path.Combine(Repo.Root, "models", "embedded");   // head dim 64: QK8 applies
    static string Tiny => Repo.TinyModel;                                        // head dim 32: it does not

    [Fact]
    public void GenerateRunsItOnTheCpuAndSaysSo()
    {
        var (code, _, err) = CliRun.Apb("generate", "--model", Embedded, "--prompt", "hi", "--chat", "false", "-n", "2", "--prefill-attention", "fp8");
        Assert.True(code == 0, err);
        Assert.Contains("fp8 prefill attention (Q K^T in e4m3)", err);
        var plain = CliRun.Apb("generate", "--model", Embedded, "--prompt", "hi", "--chat", "false", "-n", "2", "--prefill-attention", "bf16");
        Assert.True(plain.Code == 0, plain.Err);
        Assert.DoesNotContain("fp8 prefill attention", plain.Err);
    }

    [Fact]
    public void EvalLabelsItsRowsAndBenchPrefillRecordsIt()
    {
        using var tmp = new TempDir();
        var (code, output, err) = CliRun.Apb("eval", "ruler", "--model", Embedded, "--tasks", "niah_single_1", "--length", "1k", "--samples", "1",
            "--strategies", "full,apb", "--prefill-attention", "fp8");
        Assert.True(code == 0, err);
        Assert.Contains("full (fp8 attention)", output);
        Assert.Contains("fp8 attention)", output.Split('\n').First(l => l.Contains("apb x4")));

        string dir = Path.Combine(tmp.Path, "prefill");
        var bench = CliRun.Apb("bench", "prefill", "--model", Embedded, "--lengths", "1k", "--strategies", "full", "--repeats", "1", "--warmup", "0",
            "--no-profile", "--out", dir, "--prefill-attention", "fp8");
        Assert.True(bench.Code == 0, bench.Err);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "prefill.json")));
        Assert.Equal("fp8", json.RootElement.GetProperty("prefill_attention").GetString());
        Assert.Contains("fp8 prefill attention", File.ReadAllText(Path.Combine(dir, "prefill.md")));
    }

    [Theory]
    [InlineData("generate", "--prompt", "hi")]
    [InlineData("logits", "--prompt", "hi")]
    [InlineData("serve", "--port", "0")]
    [InlineData("eval", "ruler", "--length", "1k", "--samples", "1")]
    public void AHeadDimItDoesNotCoverIsRefused(params string[] command) =>
        HostileCliTests.AssertUserError(CliRun.Apb([.. command, "--model", Tiny, "--prefill-attention", "fp8"]),
            "covers head dims 64 and 128 (the Hopper kernel's); this model's is 32");

    [Fact]
    public void BenchShapesAreCheckedToo() =>
        HostileCliTests.AssertUserError(CliRun.Apb("bench", "prefill", "--shape", "tiny", "--lengths", "1k", "--strategies", "full", "--prefill-attention", "fp8"),
            "this model's is 16");

    [Fact]
    public void BenchServeAgainstAServerSaysWhereTheFlagBelongs() =>
        HostileCliTests.AssertUserError(CliRun.Apb("bench", "serve", "--url", "http://127.0.0.1:9", "--prefill-attention", "fp8"),
            "give the flag to its `apb serve`");

    [Fact]
    public void AnUnknownValueIsNamed() =>
        HostileCliTests.AssertUserError(CliRun.Apb("generate", "--model", Tiny, "--prompt", "hi", "--prefill-attention", "fp16"),
            "--prefill-attention fp16: expected bf16 or fp8");
}
