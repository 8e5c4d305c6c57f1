using Apb.Backends.Cpu;
using Apb.Checkpoints;
using Apb.Engine;
using Apb.Model;
using Apb.Runtime;
using Xunit;

namespace Apb.Tests.Model;

/// <summary>
/// Our fp32 CPU forward pass against Hugging Face's float64 logits on the committed fixtures: Llama 3.x and Qwen2, and
/// the families (Qwen3, Qwen3 + YaRN, Mistral with its sliding window, Yi, Llama 3.2, dynamic NTK), whose theories skip
/// naming the command that makes them while their folders are absent.
/// </summary>
public class ReferenceParityTests
{
    public static TheoryData<string> Fixtures => new() { "llama-tiny", "qwen2-tiny", "llama-headdim-sharded", "embedded-random" };
    public static TheoryData<string> Families => new(FamilyFixtures.Names);

    static (LlamaModel, CheckpointWeights) Load(string fixtureDir)
    {
        string dir = fixtureDir;
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        var ckpt = CheckpointWeights.Open(dir);
        return (LlamaModel.Load(config, ckpt, new CpuBackend()), ckpt);
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void LogitsMatchHuggingFace(string name) => Logits(name);

    [FamilyFixturesTheory]
    [MemberData(nameof(Families))]
    public void FamilyLogitsMatchHuggingFace(string name) => Logits(name);

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void GreedyContinuationMatchesHuggingFace(string name) => Greedy(name);

    [FamilyFixturesTheory]
    [MemberData(nameof(Families))]
    public void FamilyGreedyContinuationMatchesHuggingFace(string name) => Greedy(name);

    static void Logits(string name)
    {
        var fx = ReferenceFixture.Load(Repo.Fixture(name));
        var (model, ckpt) = Load(fx.Dir);
        using var _ = ckpt;
        var session = new LocalSession(model, fx.PromptIds.Length);
        var logits = session.AllLogits(fx.PromptIds);
        Assert.Equal(fx.Logits.Length, logits.Length);
        double err = ReferenceFixture.RelativeError(logits, fx.Logits);
        Assert.True(err < 1e-4, $"{name}: relative error {err:E3} against HF float64 (limit 1e-4)");
        // Per row too: a bug confined to late positions (RoPE scaling, cache offsets) must not hide in the average.
        for (int t = 0; t < fx.PromptIds.Length; t += 37)
        {
            double e = ReferenceFixture.RelativeError(logits.AsSpan(t * fx.Vocab, fx.Vocab), fx.Logits.AsSpan(t * fx.Vocab, fx.Vocab));
            Assert.True(e < 1e-4, $"{name}: row {t} relative error {e:E3}");
        }
    }

    static void Greedy(string name)
    {
        var fx = ReferenceFixture.Load(Repo.Fixture(name));
        var (model, ckpt) = Load(fx.Dir);
        using var _ = ckpt;
        var session = new LocalSession(model, fx.PromptIds.Length + fx.GreedyIds.Length);
        var logits = session.Prefill(fx.PromptIds, Array.Empty<int>());
        var got = new List<int>();
        for (int i = 0; i < fx.GreedyIds.Length; i++)
        {
            int next = Sampler.ArgMax(logits);
            got.Add(next);
            logits = session.Decode(next);
        }
        Assert.Equal(fx.GreedyIds, got);
    }
}
