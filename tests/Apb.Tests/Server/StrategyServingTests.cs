using Apb.Backends.Cpu;
using Apb.Model;
using Apb.Strategies;
using Apb.Runtime;
using Apb.Serving;
using OpenAI.Chat;
using Xunit;

namespace Apb.Tests.Server;

/// <summary>The server with a sequence-parallel strategy behind its session factory: exact strategies answer as full does.</summary>
[Collection(ServerCollection.Name)]
public class StrategyServingTests
{
    [Fact]
    public async Task RingOverThreeRanksAnswersExactlyAsFullAttention()
    {
        var bundle = Harness.Bundle;
        var weights = LlamaWeights.Load(bundle.Config, bundle.Checkpoint, new CpuBackend());
        using var group = RankGroup.Create(bundle.Config, new StrategyOptions { Strategy = StrategyKind.Ring, Ranks = 3 },
            _ => new CpuBackend(), _ => weights);
        var ring = Harness.Model((prompt, capacity) => new GroupSession(group, prompt.AnchorInsertAt, capacity - prompt.Count));
        string document = string.Join(" ", Enumerable.Repeat("The mill by the river grinds grain for the village.", 12));
        var messages = new List<ChatMessage> { new UserChatMessage(document + "\n\nWhat does the mill grind?") };
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 10, Temperature = 0 };

        await using var full = await Harness.StartAsync(Harness.Model());
        await using var distributed = await Harness.StartAsync(ring);
        var a = await Harness.OpenAiChat(full).CompleteChatAsync(messages, options);
        var b = await Harness.OpenAiChat(distributed).CompleteChatAsync(messages, options);
        Assert.Equal(a.Value.Content[0].Text, b.Value.Content[0].Text);
        Assert.Equal(a.Value.Usage.InputTokenCount, b.Value.Usage.InputTokenCount);
    }
}
