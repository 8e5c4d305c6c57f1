using System.Diagnostics;
using Apb.Tests.Checkpoints;
using Xunit;

namespace Apb.Tests.Cli;

/// <summary>
/// Issue #16's findings against the CLI, one test each: every user-caused failure exits 1 with one error line (never 2,
/// "internal error"), nonsense input is refused instead of accepted, and nothing hangs or grows without bound.
/// </summary>
public class HostileCliTests : IDisposable
{
    readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    static string Tiny => Repo.TinyModel;

    /// <summary>Exit 1, exactly one "error:" line holding <paramref name="expected"/>, no stack trace.</summary>
    internal static void AssertUserError((int Code, string Out, string Err) run, string expected)
    {
        Assert.True(run.Code == 1, $"exit {run.Code}, expected 1:\n{run.Err}");
        var errors = run.Err.Split('\n').Where(l => l.StartsWith("error: ", StringComparison.Ordinal)).ToList();
        Assert.True(errors.Count == 1, $"expected one error line:\n{run.Err}");
        Assert.Contains(expected, errors[0]);
        Assert.DoesNotContain("   at ", run.Err);
    }

    /// <summary>A copy of the tiny checkpoint with its config.json (and optionally its weights) edited.</summary>
    string Checkpoint(Action<System.Text.Json.Nodes.JsonObject>? config = null, Func<List<TestTensor>, IEnumerable<TestTensor>>? weights = null)
    {
        string dir = Path.Combine(_tmp.Path, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(Tiny)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        if (config != null) JsonFiles.Edit(Path.Combine(dir, "config.json"), config);
        if (weights != null) SafeTensorsWriter.Rewrite(Path.Combine(dir, "model.safetensors"), weights);
        return dir;
    }

    // ---- exit 2 where exit 1 was due ----

    [Fact]
    public void HugeLayerCountIsAConfigErrorNotOutOfMemory() =>
        AssertUserError(CliRun.Apb("inspect", "--model", Checkpoint(c => c["num_hidden_layers"] = int.MaxValue)), "num_hidden_layers is 2147483647");

    [Fact]
    public void EmptyRawPrompt() =>
        AssertUserError(CliRun.Apb("generate", "--model", Tiny, "--prompt", "", "--chat", "false"), "the prompt is empty after tokenization");

    [Fact]
    public void LogitsOutToAMissingFolderOrADirectoryIsRefusedBeforeTheForwardPass()
    {
        AssertUserError(CliRun.Apb("logits", "--model", Tiny, "--ids", "1,2", "--out", "/nonexistent/folder/x.json"), "the folder /nonexistent/folder does not exist");
        AssertUserError(CliRun.Apb("logits", "--model", Tiny, "--ids", "1,2", "--out", _tmp.Path), "is a directory");
    }

    [Fact]
    public void NanWeightsAreReportedNotTurnedIntoLogitsOrText()
    {
        // bf16 NaN (0x7FC0) in the final norm: every logit is NaN. logits --out used to crash writing them (exit 2),
        // generate to print noise and exit 0.
        string dir = Checkpoint(weights: ts => ts.Select(t => t.Name == "model.norm.weight"
            ? t with { Data = Enumerable.Range(0, t.Data.Length).Select(i => i % 2 == 0 ? (byte)0xC0 : (byte)0x7F).ToArray() } : t));
        AssertUserError(CliRun.Apb("logits", "--model", dir, "--ids", "1,2,3", "--out", _tmp.File("nan.json")), "hold NaN");
        AssertUserError(CliRun.Apb("generate", "--model", dir, "--prompt", "hello", "-n", "4"), "weights contain NaN or infinite values");
    }

    [Fact]
    public void EvalOutputThatCannotBeWrittenIsRefusedBeforeTheRun()
    {
        var sw = Stopwatch.StartNew();
        AssertUserError(CliRun.Apb("eval", "ruler", "--model", Tiny, "--json", "/proc/apb-cannot-write-here.json", "--length", "1k", "--samples", "1"), "cannot write the file");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"took {sw.Elapsed.TotalSeconds:F1} s: the samples ran before the path was checked");
    }

    [Fact]
    public void ServeOnAnAddressNotOnThisMachine() =>
        // 192.0.2.0/24 is TEST-NET-1: documentation only, assigned to no machine.
        AssertUserError(CliRun.Apb("serve", "--model", Tiny, "--host", "192.0.2.1", "--port", "0"), "not one of this machine's");

    // ---- integer overflow, unbounded counts ----

    [Fact]
    public void MaxNewTokensNearIntMaxDoesNotWrapPastTheContextCheck() =>
        AssertUserError(CliRun.Apb("generate", "--model", Tiny, "--prompt", "hi", "--chat", "false", "-n", int.MaxValue.ToString()),
            "exceeds max_position_embeddings (32768)");

    [Fact]
    public void RanksAreBoundedWithTheReason()
    {
        long before = GC.GetTotalAllocatedBytes();
        AssertUserError(CliRun.Apb("generate", "--model", Tiny, "--prompt", "hi", "--strategy", "ring", "--ranks", "400"), "--ranks 400 is more than 64");
        AssertUserError(CliRun.Apb("generate", "--model", Tiny, "--prompt", "hi", "--strategy", "ring", "--ranks", "4000"), "--ranks 4000 is more than 64");
        Assert.True(GC.GetTotalAllocatedBytes() - before < 256 << 20, "refused before any rank was built");
    }

    [Fact]
    public void RanksBeyondTheTokensAreACleanError() =>
        AssertUserError(CliRun.Apb("generate", "--model", Tiny, "--prompt", "a b", "--chat", "false", "--strategy", "ring", "--ranks", "8"),
            "every rank needs at least one context token");

    [Fact]
    public void EvalSamplesAreBounded()
    {
        var sw = Stopwatch.StartNew();
        AssertUserError(CliRun.Apb("eval", "ruler", "--model", Tiny, "--samples", int.MaxValue.ToString()), "all held in memory");
        AssertUserError(CliRun.Apb("eval", "generate", "--tokenizer", Tiny, "--samples", int.MaxValue.ToString(), "--out", _tmp.File("s.jsonl")), "all held in memory");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10));
    }

    // ---- accepted nonsense ----

    [Fact]
    public void InspectChecksTensorsAgainstTheConfigAsLoadingDoes()
    {
        // intermediate_size 256 where the weights have 512: logits refused this, inspect described it.
        AssertUserError(CliRun.Apb("inspect", "--model", Checkpoint(c => c["intermediate_size"] = 256)), "config.json implies [256, 192]");
        // A weight stored as integers (same shape, same bytes).
        string dir = Checkpoint(weights: ts => ts.Select(t => t.Name == "model.norm.weight" ? t with { DType = "I16" } : t));
        AssertUserError(CliRun.Apb("inspect", "--model", dir), "'model.norm.weight' is I16; weights must be F32, F16 or BF16");
    }

    [Fact]
    public void TinyRopeThetaNegativeEosAndAnchorInsertOutsideTheContext()
    {
        AssertUserError(CliRun.Apb("generate", "--model", Checkpoint(c => c["rope_theta"] = 1e-300), "--prompt", "hi"), "'rope_theta' is 1E-300");
        AssertUserError(CliRun.Apb("inspect", "--model", Checkpoint(c => c["eos_token_id"] = -1)), "'eos_token_id' holds token id -1");
        AssertUserError(CliRun.Apb("logits", "--model", Tiny, "--ids", "1,2,3", "--anchor-insert-at", "-5"), "--anchor-insert-at -5 is outside the context of 3 tokens");
    }

    // ---- hangs and unbounded reads ----

    [Fact]
    public void APromptFileThatIsAFifoWithoutWriterEnds()
    {
        if (OperatingSystem.IsWindows()) return;
        string fifo = Fifo.Make(_tmp.Path, "prompt.fifo");
        try { AssertUserError(CliRun.Apb("generate", "--model", Tiny, "--prompt-file", fifo), "FIFO (named pipe)"); }
        finally { Fifo.Release(fifo); }
    }

    [Fact]
    public void AWeightsFileThatIsAFifoEnds()
    {
        if (OperatingSystem.IsWindows()) return;
        string dir = Checkpoint();
        string weights = Path.Combine(dir, "model.safetensors");
        File.Delete(weights);
        var fifo = Fifo.Make(dir, "model.safetensors");
        try { AssertUserError(CliRun.Apb("inspect", "--model", dir), "FIFO (named pipe)"); }
        finally { Fifo.Release(fifo); }
    }
}

/// <summary>
/// Reads of a device that never ends stop at their limit (64 MiB for a prompt file). Run alone: the buffer is large
/// enough to disturb tests that measure the process' heap.
/// </summary>
[Collection(HostileInput.FuzzCollection.Name)]
public class UnboundedReadTests
{
    [Fact]
    public void APromptFileThatNeverEndsIsReadOnlyUpToTheLimit()
    {
        if (!File.Exists("/dev/zero")) return;
        HostileCliTests.AssertUserError(CliRun.Apb("generate", "--model", Repo.TinyModel, "--prompt-file", "/dev/zero"), "has more than 67108864 bytes");
    }
}
