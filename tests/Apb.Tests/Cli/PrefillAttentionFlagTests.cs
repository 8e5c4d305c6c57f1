using Xunit;

namespace Apb.Tests.Cli;

/// <summary>
/// --prefill-attention: fp8 (QK8, the Hopper kernel with Q K^T in e4m3) is a GPU kernel, so on the CPU every command that
/// takes the flag refuses it with an error that says what to do; bf16 is accepted everywhere; anything else is named in the error.
/// The GPU side (the switch reaching the kernel) is what bench/gpu runs measure with the flag.
/// </summary>
public class PrefillAttentionFlagTests
{
    static string Tiny => Repo.TinyModel;

    [Theory]
    [InlineData("generate", "--prompt", "hi")]
    [InlineData("logits", "--prompt", "hi")]
    [InlineData("serve", "--port", "0")]
    [InlineData("eval", "ruler", "--length", "1k", "--samples", "1")]
    [InlineData("bench", "prefill", "--shape", "tiny", "--lengths", "1k", "--strategies", "full")]
    [InlineData("bench", "serve", "--shape", "tiny", "--requests", "1")]
    public void Fp8OnTheCpuIsRefusedWithWhatToDo(params string[] command)
    {
        string[] model = command[0] == "bench" ? [] : ["--model", Tiny];
        var run = CliRun.Apb([.. command, .. model, "--device", "cpu", "--prefill-attention", "fp8"]);
        HostileCliTests.AssertUserError(run, "--prefill-attention fp8 runs the Hopper GPU kernel");
        Assert.Contains("--device cuda", run.Err);
    }

    [Fact]
    public void BenchServeAgainstAServerSaysWhereTheFlagBelongs() =>
        HostileCliTests.AssertUserError(CliRun.Apb("bench", "serve", "--url", "http://127.0.0.1:9", "--prefill-attention", "fp8"),
            "give the flag to its `apb serve`");

    [Fact]
    public void TheDemoRefusesItToo() =>
        // generate with no prompt and no model is the embedded demo: the flag reaches it rather than being dropped.
        HostileCliTests.AssertUserError(CliRun.Apb("generate", "--device", "cpu", "--prefill-attention", "fp8"), "--prefill-attention fp8 runs the Hopper GPU kernel");

    [Fact]
    public void AnUnknownValueIsNamed() =>
        HostileCliTests.AssertUserError(CliRun.Apb("generate", "--model", Tiny, "--prompt", "hi", "--prefill-attention", "fp16"),
            "--prefill-attention fp16: expected bf16 or fp8");

    [Fact]
    public void Bf16IsTheCpusOwnArithmeticAndRuns()
    {
        var (code, _, err) = CliRun.Apb("generate", "--model", Tiny, "--prompt", "hi", "--chat", "false", "-n", "2", "--prefill-attention", "bf16");
        Assert.True(code == 0, err);
        Assert.DoesNotContain("fp8 prefill attention", err);
    }
}
