using System.Text.Json;
using Xunit;

namespace Apb.Tests.Cli;

/// <summary>The `apb` command run in-process: what a user sees on stdout/stderr and the exit code.</summary>
public class CliTests
{
    [Fact]
    public void GenerateOnTheRandomFixturePrintsEightTokensAndTimings()
    {
        // The random-weight fixture emits no stop token in its first 8 greedy tokens on the default prompt: all 8 decode.
        var (code, output, err) = CliRun.Apb("generate", "--model", Repo.TinyModel, "-n", "8");
        Assert.True(code == 0, err);
        Assert.Matches(@"prefill: \d+ tokens in [0-9.]+ s \([0-9.]+ tok/s\); decode: 8 tokens in [0-9.]+ s \([0-9.]+ tok/s\); finish: length", err);
        Assert.False(string.IsNullOrWhiteSpace(output), "8 tokens were generated but nothing printed");
    }

    [Fact]
    public void GenerateOnTheEmbeddedModelAnswersANeedleQuestion()
    {
        // The shipped model (models/embedded) on a seed-0 needle sample of its own task format, context and query given apart.
        var tokenizer = Apb.Tokenization.HfTokenizer.Load(Path.Combine(Repo.EmbeddedModel, "tokenizer.json"), Path.Combine(Repo.EmbeddedModel, "tokenizer_config.json"));
        var sample = new Apb.Eval.SampleGenerator(tokenizer).Generate(Apb.Eval.RulerTasks.Parse("niah_single_1")[0], 512, seed: 0, index: 0).Sample;
        using var tmp = new TempDir();
        string context = tmp.File("context.txt");
        File.WriteAllText(context, sample.Context);
        var (code, output, err) = CliRun.Apb("generate", "--model", Repo.EmbeddedModel, "--context-file", context, "--query", sample.Query, "-n", "12");
        Assert.True(code == 0, err);
        Assert.Equal(sample.AnswerText, output.TrimEnd('\n'));
        Assert.Contains("finish: stop", err);
    }

    [Fact]
    public void GenerateWithNoArgumentsRunsTheNeedleDemoWithApbAndFull()
    {
        // The README's first command: the trained embedded model finds the needle with APB over 4 ranks and with full.
        // Like `dotnet run` from the repository root, the CLI looks for models/embedded above the working directory.
        Directory.SetCurrentDirectory(Repo.Root);
        var (code, output, err) = CliRun.Apb("generate");
        Assert.True(code == 0, err);
        Assert.Contains("expected:", output);
        Assert.Contains("apb x4:", output);
        Assert.Matches(@"apb x4: .*\(correct", output);
        Assert.Contains("APB and full attention agree.", output);
        Assert.Contains("max/mean", err); // the per-rank timing table
    }

    [Fact]
    public void GreedyGenerationIsDeterministicAndSamplingFollowsTheSeed()
    {
        var a = CliRun.Apb("generate", "--model", Repo.TinyModel, "-n", "6", "--prompt", "abc");
        var b = CliRun.Apb("generate", "--model", Repo.TinyModel, "-n", "6", "--prompt", "abc");
        Assert.Equal(a.Out, b.Out);
        var s1 = CliRun.Apb("generate", "--model", Repo.TinyModel, "-n", "12", "--prompt", "abc", "-t", "1.5", "--seed", "7", "--top-k", "50", "--top-p", "0.95");
        var s2 = CliRun.Apb("generate", "--model", Repo.TinyModel, "-n", "12", "--prompt", "abc", "-t", "1.5", "--seed", "7", "--top-k", "50", "--top-p", "0.95");
        Assert.Equal(0, s1.Code);
        Assert.Equal(s1.Out, s2.Out);
    }

    [Fact]
    public void LogitsWritesOneRowPerPositionMatchingTheFixture()
    {
        var fx = Model.ReferenceFixture.Load(Repo.Fixture("llama-tiny"));
        string path = Path.Combine(Path.GetTempPath(), $"apb-logits-{Guid.NewGuid():N}.json");
        try
        {
            var ids = string.Join(",", fx.PromptIds.Take(40));
            var (code, _, err) = CliRun.Apb("logits", "--model", fx.Dir, "--ids", ids, "--out", path);
            Assert.True(code == 0, err);
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var rows = doc.RootElement.GetProperty("logits").EnumerateArray().ToArray();
            Assert.Equal(40, rows.Length);
            // Causal: the first 40 rows of the 300-token reference are the logits of the 40-token prefix.
            var got = rows.SelectMany(r => r.EnumerateArray().Select(x => x.GetSingle())).ToArray();
            double e = Model.ReferenceFixture.RelativeError(got, fx.Logits.AsSpan(0, 40 * fx.Vocab));
            Assert.True(e < 1e-4, $"relative error {e}");
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void LogitsOfTextTokenizesLikeHuggingFace()
    {
        // reference.json's prompt_ids start with HF's tokenizer(prompt_text) (then random ids pad to 300).
        var fx = Model.ReferenceFixture.Load(Repo.Fixture("qwen2-tiny"));
        var tok = Apb.Tokenization.HfTokenizer.Load(Path.Combine(fx.Dir, "tokenizer.json"), Path.Combine(fx.Dir, "tokenizer_config.json"));
        var ids = tok.Encode(fx.PromptText);
        Assert.Equal(fx.PromptIds.Take(ids.Count), ids.Take(fx.PromptIds.Length));
    }

    [Fact]
    public void InspectDescribesTheModel()
    {
        var (code, output, _) = CliRun.Apb("inspect", "--model", Repo.Fixture("qwen2-tiny"));
        Assert.Equal(0, code);
        Assert.Contains("Qwen2ForCausalLM", output);
        Assert.Contains("5 heads, 1 kv heads", output);
        Assert.Contains("tied embeddings", output);
    }

    [Theory]
    [InlineData("token id 999999 is outside the vocabulary", "logits", "--ids", "1,2,999999")]
    [InlineData("'x' is not an integer", "logits", "--ids", "1,x")]
    [InlineData("exactly one of --ids or --prompt", "logits")]
    [InlineData("model directory not found", "generate", "--model", "/nonexistent/model")]
    [InlineData("temperature must be >= 0", "generate", "-t", "-1")]
    [InlineData("top-p must be in (0, 1]", "generate", "--top-p", "0")]
    [InlineData("prompt file not found", "generate", "--prompt-file", "/nonexistent/prompt.txt")]
    [InlineData("exceeds max_position_embeddings", "generate", "-n", "40000")]
    public void BadInputGivesOneClearErrorAndExitCode1(string expected, params string[] args)
    {
        var full = args.Contains("--model") ? args : args.Append("--model").Append(Repo.TinyModel).ToArray();
        var (code, _, err) = CliRun.Apb(full);
        Assert.Equal(1, code);
        Assert.Contains(expected, err);
        Assert.DoesNotContain("   at ", err); // no stack trace
    }

    [Fact]
    public void APromptLongerThanTheModelIsRefused()
    {
        // llama-headdim-sharded has max_position_embeddings 2048.
        string path = Path.Combine(Path.GetTempPath(), $"apb-long-{Guid.NewGuid():N}.txt");
        File.WriteAllText(path, string.Concat(Enumerable.Repeat("lorem ipsum dolor ", 3000)));
        try
        {
            var (code, _, err) = CliRun.Apb("generate", "--model", Repo.Fixture("llama-headdim-sharded"), "--prompt-file", path, "--chat", "false");
            Assert.Equal(1, code);
            Assert.Contains("max_position_embeddings is 2048", err);
        }
        finally { File.Delete(path); }
    }
}
