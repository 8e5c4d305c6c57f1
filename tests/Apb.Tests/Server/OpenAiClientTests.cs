using System.Text;
using System.Text.Json;
using OpenAI.Chat;
using Xunit;

namespace Apb.Tests.Server;

/// <summary>The official OpenAI .NET client against `apb serve` on the random-weight fixture (its text is gibberish).</summary>
[Collection(ServerCollection.Name)]
public class OpenAiClientTests(SharedServer shared)
{
    const string Question = "The report covers three years of river levels.\n\nWhat does the report cover?";

    static ChatCompletionOptions Greedy(int maxTokens) => new() { MaxOutputTokenCount = maxTokens, Temperature = 0 };

    [Fact]
    public async Task ChatReturnsTextUsageAndFinishReason()
    {
        var chat = Harness.OpenAiChat(shared.Server);
        ChatCompletion c = await chat.CompleteChatAsync([new UserChatMessage(Question)], Greedy(8));
        Assert.Equal(ChatMessageRole.Assistant, c.Role);
        Assert.NotEmpty(c.Content[0].Text);
        Assert.Equal("embedded", c.Model);
        Assert.True(c.Usage.InputTokenCount > 10, $"prompt tokens {c.Usage.InputTokenCount}");
        Assert.InRange(c.Usage.OutputTokenCount, 1, 8);
        Assert.Equal(c.Usage.InputTokenCount + c.Usage.OutputTokenCount, c.Usage.TotalTokenCount);
        Assert.Equal(c.Usage.OutputTokenCount == 8 ? ChatFinishReason.Length : ChatFinishReason.Stop, c.FinishReason);
    }

    [Fact]
    public async Task StreamedChunksConcatenateToTheGreedyAnswer()
    {
        var chat = Harness.OpenAiChat(shared.Server);
        var messages = new List<ChatMessage> { new SystemChatMessage("Answer briefly."), new UserChatMessage(Question) };
        ChatCompletion whole = await chat.CompleteChatAsync(messages, Greedy(12));

        var text = new StringBuilder();
        ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        int updates = 0;
        await foreach (var u in chat.CompleteChatStreamingAsync(messages, Greedy(12)))
        {
            Assert.True(++updates < 100, "more updates than tokens");
            foreach (var part in u.ContentUpdate) text.Append(part.Text);
            finish ??= u.FinishReason;
            usage ??= u.Usage;
        }
        Assert.Equal(whole.Content[0].Text, text.ToString());
        Assert.Equal(whole.FinishReason, finish);
        Assert.NotNull(usage);
        Assert.Equal(whole.Usage.InputTokenCount, usage.InputTokenCount);
        Assert.Equal(whole.Usage.OutputTokenCount, usage.OutputTokenCount);
    }

    [Fact]
    public async Task SameSeedSameSample()
    {
        var chat = Harness.OpenAiChat(shared.Server);
#pragma warning disable OPENAI001 // Seed is marked experimental in the client
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 10, Temperature = 1.2f, TopP = 0.95f, Seed = 1234 };
#pragma warning restore OPENAI001
        ChatCompletion a = await chat.CompleteChatAsync([new UserChatMessage("Say something.")], options);
        ChatCompletion b = await chat.CompleteChatAsync([new UserChatMessage("Say something.")], options);
        Assert.Equal(a.Content[0].Text, b.Content[0].Text);
    }

    [Fact]
    public async Task StopSequenceCutsTheTextBeforeTheMatch()
    {
        var chat = Harness.OpenAiChat(shared.Server);
        ChatCompletion free = await chat.CompleteChatAsync([new UserChatMessage(Question)], Greedy(24));
        string text = free.Content[0].Text;
        Assert.True(text.Length >= 8, $"need a longer greedy answer to cut: '{text}'");
        string stop = text.Substring(text.Length / 2, 2);
        string expected = text[..text.IndexOf(stop, StringComparison.Ordinal)];

        var options = Greedy(24);
        options.StopSequences.Add("\u0001never");
        options.StopSequences.Add(stop);
        ChatCompletion cut = await chat.CompleteChatAsync([new UserChatMessage(Question)], options);
        Assert.Equal(expected, cut.Content[0].Text);
        Assert.Equal(ChatFinishReason.Stop, cut.FinishReason);
        Assert.True(cut.Usage.OutputTokenCount < free.Usage.OutputTokenCount, "generation should end at the stop sequence");

        var streamed = new StringBuilder();
        await foreach (var u in chat.CompleteChatStreamingAsync([new UserChatMessage(Question)], options))
            foreach (var part in u.ContentUpdate) streamed.Append(part.Text);
        Assert.Equal(expected, streamed.ToString());
    }

    [Fact]
    public async Task CompletionsEndpointStreamsTheSameTextItReturns()
    {
        const string body = """{"model": "embedded", "prompt": "Once upon a time", "max_tokens": 10, "temperature": 0""";
        var (status, whole) = await Harness.PostAsync(shared.Http, "/v1/completions", body + "}");
        Assert.Equal(200, status);
        Assert.Equal("text_completion", whole.GetProperty("object").GetString());
        var choice = whole.GetProperty("choices")[0];
        string text = choice.GetProperty("text").GetString()!;
        var usage = whole.GetProperty("usage");
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32() + usage.GetProperty("completion_tokens").GetInt32(),
            usage.GetProperty("total_tokens").GetInt32());

        var (sstatus, events) = await Harness.StreamAsync(shared.Http, "/v1/completions",
            body + """, "stream": true, "stream_options": {"include_usage": true}}""");
        Assert.Equal(200, sstatus);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.All(chunks, c => Assert.Equal("text_completion", c.GetProperty("object").GetString()));
        var withChoice = chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0).Select(c => c.GetProperty("choices")[0]).ToList();
        Assert.Equal(text, string.Concat(withChoice.Select(c => c.GetProperty("text").GetString())));
        var finishes = withChoice.Where(c => c.GetProperty("finish_reason").ValueKind != JsonValueKind.Null).ToList();
        Assert.Single(finishes);
        Assert.Equal(choice.GetProperty("finish_reason").GetString(), finishes[0].GetProperty("finish_reason").GetString());
        Assert.Equal(usage.GetRawText(), chunks[^1].GetProperty("usage").GetRawText());
    }

    [Fact]
    public async Task ModelsHealthAndMetrics()
    {
        var models = JsonDocument.Parse(await shared.Http.GetStringAsync("/v1/models")).RootElement;
        Assert.Equal("list", models.GetProperty("object").GetString());
        var card = models.GetProperty("data")[0];
        Assert.Equal("embedded", card.GetProperty("id").GetString());
        Assert.Equal("model", card.GetProperty("object").GetString());
        Assert.Equal(32768, card.GetProperty("max_model_len").GetInt32());
        Assert.Equal("embedded", JsonDocument.Parse(await shared.Http.GetStringAsync("/v1/models/embedded")).RootElement.GetProperty("id").GetString());

        var health = JsonDocument.Parse(await shared.Http.GetStringAsync("/health")).RootElement;
        Assert.Equal("ok", health.GetProperty("status").GetString());

        var (status, _) = await Harness.PostAsync(shared.Http, "/v1/chat/completions",
            """{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}""");
        Assert.Equal(200, status);
        using var response = await shared.Http.GetAsync("/metrics");
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        string metrics = await response.Content.ReadAsStringAsync();
        foreach (var series in new[] { "apb_queue_depth ", "apb_in_flight ", "apb_prefill_tokens_per_second ", "apb_decode_tokens_per_second ",
                     "apb_time_to_first_token_seconds_count ", "apb_time_to_first_token_seconds_bucket{le=\"+Inf\"} " })
            Assert.Contains("\n" + series, metrics);
        Assert.True(await Harness.MetricAsync(shared.Http, "apb_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"}") >= 1);
        Assert.True(await Harness.MetricAsync(shared.Http, "apb_prefill_tokens_per_second") > 0);
        Assert.True(await Harness.MetricAsync(shared.Http, "apb_time_to_first_token_seconds_count") >= 1);
    }
}
