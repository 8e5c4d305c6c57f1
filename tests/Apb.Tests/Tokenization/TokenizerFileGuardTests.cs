using Apb.Checkpoints;
using Apb.Tests.Checkpoints;
using Apb.Tests.Cli;
using Xunit;

namespace Apb.Tests.Tokenization;

/// <summary>
/// A model folder whose tokenizer files are not regular files ends with an error naming the file, through InputFile's
/// open time limit (a FIFO nobody writes to) and size limit (/dev/zero), instead of hanging or filling memory.
/// </summary>
public sealed class TokenizerFileGuardTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"apb-tokenizer-guard-{Guid.NewGuid():N}");

    public TokenizerFileGuardTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ATokenizerJsonThatIsAFifoEnds()
    {
        if (OperatingSystem.IsWindows()) return; // no FIFOs
        string fifo = Fifo.Make(_dir, "tokenizer.json");
        try
        {
            var run = CliRun.Apb("tokenize", "--model", _dir, "--prompt", "x");
            HostileCliTests.AssertUserError(run, $"{fifo}: opening the Hugging Face tokenizer.json did not finish in {InputFile.OpenTimeout.TotalSeconds:F0} s");
            Assert.Contains("FIFO (named pipe)", run.Err);
        }
        finally { Fifo.Release(fifo); }
    }

    [Fact]
    public void AChatTemplateThatIsAFifoEnds()
    {
        if (OperatingSystem.IsWindows()) return;
        string fifo = Fifo.Make(_dir, "template.jinja");
        try
        {
            var run = CliRun.Apb("tokenize", "--model", Path.GetDirectoryName(TokenizerFixtures.Model("qwen3", "tokenizer.json"))!,
                "--prompt", "x", "--chat-template", fifo);
            HostileCliTests.AssertUserError(run, $"{fifo}: opening the Jinja chat template did not finish");
        }
        finally { Fifo.Release(fifo); }
    }
}

/// <summary>
/// Tokenizer files that never end are read only up to their limits. Run alone: the buffers are large enough to disturb
/// tests that measure the process' heap.
/// </summary>
[Collection(HostileInput.FuzzCollection.Name)]
public sealed class TokenizerUnboundedReadTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"apb-tokenizer-zero-{Guid.NewGuid():N}");

    public TokenizerUnboundedReadTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("tokenizer.json", "the Hugging Face tokenizer.json has more than 134217728 bytes")]
    [InlineData("tokenizer_config.json", "the Hugging Face tokenizer_config.json has more than 67108864 bytes")]
    public void ATokenizerFileThatIsDevZeroEnds(string name, string expected)
    {
        if (!File.Exists("/dev/zero")) return;
        if (name != "tokenizer.json") File.Copy(TokenizerFixtures.Model("qwen3", "tokenizer.json"), Path.Combine(_dir, "tokenizer.json"));
        File.CreateSymbolicLink(Path.Combine(_dir, name), "/dev/zero");
        HostileCliTests.AssertUserError(CliRun.Apb("tokenize", "--model", _dir, "--prompt", "x"), expected);
    }
}
