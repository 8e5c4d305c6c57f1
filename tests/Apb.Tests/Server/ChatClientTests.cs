using System.Text;
using Apb.Extensions.AI;
using Apb.Serving;
using Microsoft.Extensions.AI;
using Xunit;

namespace Apb.Tests.Server;

/// <summary>The in-process IChatClient on the random-weight fixture: same answers as the server, usage, options, cancellation.</summary>
[Collection(ServerCollection.Name)]
public class ChatClientTests
{
    static readonly ChatMessage[] Conversation =
    [
        new(ChatRole.System, "Answer briefly."),
        new(ChatRole.User, "The report covers three years of river levels.\n\nWhat does the report cover?"),
    ];

    [Fact]
    public async Task ResponseHasTextUsageAndFinishReason()
    {
        using IChatClient client = new ApbChatClient(Harness.Model());
        var r = await client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 6, Temperature = 0 });
        Assert.NotEmpty(r.Text);
        Assert.Equal(ChatRole.Assistant, r.Messages.Single().Role);
        Assert.Equal("embedded", r.ModelId);
        Assert.NotNull(r.Usage);
        Assert.InRange(r.Usage.OutputTokenCount!.Value, 1, 6);
        Assert.Equal(r.Usage.InputTokenCount + r.Usage.OutputTokenCount, r.Usage.TotalTokenCount);
        Assert.Equal(r.Usage.OutputTokenCount == 6 ? ChatFinishReason.Length : ChatFinishReason.Stop, r.FinishReason);
        Assert.Equal("apb", client.GetService<ChatClientMetadata>()?.ProviderName);
    }

    [Fact]
    public async Task StreamingMatchesTheResponseAndTheServer()
    {
        using IChatClient client = new ApbChatClient(Harness.Model());
        var options = new ChatOptions { MaxOutputTokens = 10, Temperature = 0 };
        var whole = await client.GetResponseAsync(Conversation, options);

        var text = new StringBuilder();
        ChatFinishReason? finish = null;
        UsageDetails? usage = null;
        int updates = 0;
        await foreach (var u in client.GetStreamingResponseAsync(Conversation, options))
        {
            Assert.True(++updates < 100, "more updates than tokens");
            text.Append(u.Text);
            finish ??= u.FinishReason;
            usage ??= u.Contents.OfType<UsageContent>().FirstOrDefault()?.Details;
        }
        Assert.Equal(whole.Text, text.ToString());
        Assert.Equal(whole.FinishReason, finish);
        Assert.Equal(whole.Usage!.OutputTokenCount, usage?.OutputTokenCount);

        // The HTTP server runs the same prompt cut and sampling: the same greedy text.
        await using var server = await Harness.StartAsync(Harness.Model());
        var remote = await Harness.OpenAiChat(server).CompleteChatAsync(
            [new OpenAI.Chat.SystemChatMessage("Answer briefly."), new OpenAI.Chat.UserChatMessage(Conversation[1].Text)],
            new OpenAI.Chat.ChatCompletionOptions { MaxOutputTokenCount = 10, Temperature = 0 });
        Assert.Equal(whole.Text, remote.Value.Content[0].Text);
    }

    [Fact]
    public async Task OptionsAreHonored()
    {
        using IChatClient client = new ApbChatClient(Harness.Model());
        var free = await client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 24, Temperature = 0 });
        Assert.True(free.Text.Length >= 8, $"need a longer greedy answer: '{free.Text}'");
        string stop = free.Text.Substring(free.Text.Length / 2, 2);
        var cut = await client.GetResponseAsync(Conversation,
            new ChatOptions { MaxOutputTokens = 24, Temperature = 0, StopSequences = [stop] });
        Assert.Equal(free.Text[..free.Text.IndexOf(stop, StringComparison.Ordinal)], cut.Text);
        Assert.Equal(ChatFinishReason.Stop, cut.FinishReason);

        var seeded = new ChatOptions { MaxOutputTokens = 8, Temperature = 1.1f, TopP = 0.9f, Seed = 77 };
        Assert.Equal((await client.GetResponseAsync(Conversation, seeded)).Text, (await client.GetResponseAsync(Conversation, seeded)).Text);

        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Conversation, new ChatOptions { Temperature = -1 }));
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 0 }));
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Conversation, new ChatOptions { ModelId = "gpt-4o" }));
    }

    [Fact]
    public async Task CancellationStopsGenerationAndFreesTheSession()
    {
        var probe = new ProbeSessions { DecodeDelayMs = 20 };
        using IChatClient client = new ApbChatClient(Harness.Model(probe.New));
        using var cancel = new CancellationTokenSource();
        int updates = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in client.GetStreamingResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 2000, Temperature = 0 }, cancel.Token))
                if (++updates == 3) cancel.Cancel();
        });
        Assert.Equal(0, probe.Live); // released before the enumeration ended
        Assert.True(probe.Decodes < 100, $"{probe.Decodes} decode steps after cancelling at the third update");

        using var soon = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 2000, Temperature = 0 }, soon.Token));
        Assert.Equal(0, probe.Live);

        // Breaking out of the loop early ends the generation too.
        await foreach (var _ in client.GetStreamingResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 2000, Temperature = 0 })) break;
        Assert.Equal(0, probe.Live);
    }
}
