using System.Text.Json;
using Apb.Backends.Cpu;
using Apb.Checkpoints;
using Apb.Model;
using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.Model;

/// <summary>
/// The family fixtures end to end beyond their logits (ReferenceParityTests): config.json reads as the family it is,
/// every tensor loads, our tokenizer gives transformers' ids for the prompt and the chat template, and `apb inspect` /
/// `apb generate` run on each. Skipped, naming the command that makes them, while the folders are absent.
/// </summary>
public class FamilyFixtureTests
{
    public static TheoryData<string> Families => new(FamilyFixtures.Names);

    static ModelConfig Config(string name) => ModelConfig.Load(Path.Combine(Repo.Fixture(name), "config.json"));

    [FamilyFixturesFact]
    public void ConfigsReadAsTheirFamilies()
    {
        var qwen3 = Config("qwen3-tiny");
        Assert.Equal(("Qwen3ForCausalLM", true, 32, true), (qwen3.Architecture, qwen3.QkNorm, qwen3.HeadDim, qwen3.TieWordEmbeddings));
        Assert.False(qwen3.QkvBias);

        var yarn = Config("qwen3-yarn-tiny");
        Assert.Equal((RopeType.Yarn, 4.0, 64), (yarn.Rope.Type, yarn.Rope.Factor, yarn.Rope.OriginalMaxPositions));
        Assert.Equal(0.1 * Math.Log(4) + 1, yarn.Rope.AttentionFactor, 9);

        var mistral = Config("mistral-tiny");
        Assert.Equal(("MistralForCausalLM", 24), (mistral.Architecture, mistral.SlidingWindow));

        var yi = Config("yi-tiny");
        Assert.Equal(("LlamaForCausalLM", 5e6, 1), (yi.Architecture, yi.Rope.Theta, yi.NumKeyValueHeads));

        var llama32 = Config("llama32-tiny");
        Assert.Equal((RopeType.Llama3, 32.0, true), (llama32.Rope.Type, llama32.Rope.Factor, llama32.TieWordEmbeddings));

        var dynamic = Config("llama-dynamic-tiny");
        Assert.Equal((RopeType.Dynamic, 2.0, 64), (dynamic.Rope.Type, dynamic.Rope.Factor, dynamic.Rope.OriginalMaxPositions));
        // The fixture exists to run past max_position_embeddings: its prompt and continuation do.
        var fx = ReferenceFixture.Load(Repo.Fixture("llama-dynamic-tiny"));
        Assert.True(fx.PromptIds.Length > dynamic.MaxPositionEmbeddings);
    }

    [FamilyFixturesTheory]
    [MemberData(nameof(Families))]
    public void EveryTensorLoads(string name)
    {
        var config = Config(name);
        using var ckpt = CheckpointWeights.Open(Repo.Fixture(name));
        var w = LlamaWeights.Load(config, ckpt, new CpuBackend());
        Assert.Equal(config.QkNorm, w.Layers[0].QNorm != null && w.Layers[0].KNorm != null);
        Assert.Equal(config.TieWordEmbeddings, ReferenceEquals(w.EmbedTokens, w.LmHead));
    }

    [FamilyFixturesTheory]
    [MemberData(nameof(Families))]
    public void TokenizerGivesTransformersIds(string name)
    {
        string dir = Repo.Fixture(name);
        var tok = HfTokenizer.Load(Path.Combine(dir, "tokenizer.json"), Path.Combine(dir, "tokenizer_config.json"));
        // reference.json's prompt_ids start with transformers' tokenizer(prompt_text), random ids pad them to length.
        var fx = ReferenceFixture.Load(dir);
        var ids = tok.Encode(fx.PromptText);
        Assert.Equal(fx.PromptIds.Take(ids.Count), ids.Take(fx.PromptIds.Length));

        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "chat_reference.json")));
        var messages = doc.RootElement.GetProperty("messages").EnumerateArray()
            .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList();
        string rendered = tok.ChatTemplate.Render(messages, addGenerationPrompt: true);
        Assert.Equal(doc.RootElement.GetProperty("rendered").GetString(), rendered);
        var want = doc.RootElement.GetProperty("rendered_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(want, tok.Encode(rendered, addSpecialTokens: false));
    }

    [FamilyFixturesTheory]
    [MemberData(nameof(Families))]
    public void InspectAndGenerateRun(string name)
    {
        var (code, output, err) = CliRun.Apb("inspect", "--model", Repo.Fixture(name), "--context", "1k");
        Assert.True(code == 0, err);
        Assert.Contains(Config(name).Architecture, output);
        Assert.Contains("fewest H200s", output);

        (code, output, err) = CliRun.Apb("generate", "--model", Repo.Fixture(name), "--prompt", "Return the sum", "--chat", "false",
            "-n", "6", "--temperature", "0");
        Assert.True(code == 0, err);
        Assert.Contains("decode", err);
    }

    [FamilyFixturesTheory]
    [InlineData("mistral-tiny", "sliding window of 24 tokens")]
    [InlineData("llama-dynamic-tiny", "rope_type is dynamic")]
    public void SequenceParallelGenerateIsRefusedWithTheReason(string name, string reason)
    {
        var (code, _, err) = CliRun.Apb("generate", "--model", Repo.Fixture(name), "--prompt", "Return the sum", "--chat", "false",
            "-n", "2", "--strategy", "apb", "--ranks", "2");
        Assert.Equal(1, code);
        Assert.Contains(reason, err);
        Assert.Contains("--strategy full", err);
        Assert.DoesNotContain("   at ", err);
    }
}
