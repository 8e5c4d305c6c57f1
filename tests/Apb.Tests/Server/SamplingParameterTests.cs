using System.ClientModel;
using System.Text;
using System.Text.Json;
using Apb.Server;
using OpenAI.Chat;
using Xunit;

namespace Apb.Tests.Server;

/// <summary>
/// The OpenAI parameters past the basics, through the official .NET client where it has them (penalties, logit_bias,
/// logprobs, response_format) and raw HTTP where it does not (n, the legacy completions' logprobs, unknown fields):
/// each one is honoured or refused with a 400 naming it, never ignored.
/// </summary>
[Collection(ServerCollection.Name)]
public class SamplingParameterTests(SharedServer shared)
{
    const string Question = "The report covers three years of river levels.\n\nWhat does the report cover?";
    const string User = """{"role": "user", "content": "The report covers three years of river levels."}""";

    static ChatCompletionOptions Greedy(int maxTokens) => new() { MaxOutputTokenCount = maxTokens, Temperature = 0 };

    [Fact]
    public async Task LogprobsComeInOpenAisShapeAndGreedyPicksTheTopOne()
    {
        var chat = Harness.OpenAiChat(shared.Server);
        var options = Greedy(6);
        options.IncludeLogProbabilities = true;
        options.TopLogProbabilityCount = 3;
        ChatCompletion c = await chat.CompleteChatAsync([new UserChatMessage(Question)], options);
        var tokens = c.ContentTokenLogProbabilities;
        Assert.Equal(c.Usage.OutputTokenCount, tokens.Count);
        foreach (var t in tokens)
        {
            Assert.Equal(3, t.TopLogProbabilities.Count);
            Assert.True(t.LogProbability <= 0, $"logprob {t.LogProbability}");
            // Greedy picks the most likely token: its logprob is the first alternative's, and the list is sorted.
            Assert.Equal(t.TopLogProbabilities[0].LogProbability, t.LogProbability, 5);
            Assert.Equal(t.TopLogProbabilities[0].Token, t.Token);
            Assert.True(t.TopLogProbabilities[0].LogProbability >= t.TopLogProbabilities[1].LogProbability);
            // They are probabilities of one distribution: the top three sum to at most 1.
            Assert.InRange(t.TopLogProbabilities.Sum(a => Math.Exp(a.LogProbability)), 1e-6, 1 + 1e-4);
            // A token that is part of a character is written "bytes:\xNN..." (OpenAI's way); its bytes are exact either way.
            byte[] bytes = t.Utf8Bytes!.Value.ToArray();
            string expected = System.Text.Unicode.Utf8.IsValid(bytes) ? Encoding.UTF8.GetString(bytes)
                : "bytes:" + string.Concat(bytes.Select(b => $"\\x{b:x2}"));
            Assert.Equal(expected, t.Token);
        }
        // Without a stop sequence cutting it, the tokens' bytes spell the text.
        if (c.FinishReason == ChatFinishReason.Length)
            Assert.Equal(c.Content[0].Text, Encoding.UTF8.GetString(tokens.SelectMany(t => t.Utf8Bytes!.Value.ToArray()).ToArray()));
    }

    [Fact]
    public async Task StreamedLogprobsArriveWithTheLastChunk()
    {
        var chat = Harness.OpenAiChat(shared.Server);
        var options = Greedy(5);
        options.IncludeLogProbabilities = true;
        ChatCompletion whole = await chat.CompleteChatAsync([new UserChatMessage(Question)], options);
        var streamed = new List<ChatTokenLogProbabilityDetails>();
        await foreach (var u in chat.CompleteChatStreamingAsync([new UserChatMessage(Question)], options))
            streamed.AddRange(u.ContentTokenLogProbabilities);
        Assert.Equal(whole.ContentTokenLogProbabilities.Select(t => (t.Token, t.LogProbability)), streamed.Select(t => (t.Token, t.LogProbability)));
    }

    [Fact]
    public async Task LogitBiasOfOneHundredForcesAToken()
    {
        var chat = Harness.OpenAiChat(shared.Server);
        var plain = Greedy(4);
        plain.IncludeLogProbabilities = true;
        plain.TopLogProbabilityCount = 5;
        ChatCompletion before = await chat.CompleteChatAsync([new UserChatMessage(Question)], plain);
        // The fourth most likely first token, forced: every token is it, and its (raw) logprob is below the best one's.
        string forcedText = before.ContentTokenLogProbabilities[0].TopLogProbabilities[3].Token;
        int forced = Harness.Bundle.Tokenizer.Encode(forcedText, addSpecialTokens: false).Single();
        var biased = Greedy(4);
        biased.LogitBiases[forced] = 100;
        biased.IncludeLogProbabilities = true;
        ChatCompletion after = await chat.CompleteChatAsync([new UserChatMessage(Question)], biased);
        Assert.All(after.ContentTokenLogProbabilities, t => Assert.Equal(forcedText, t.Token));
        Assert.True(after.ContentTokenLogProbabilities[0].LogProbability < before.ContentTokenLogProbabilities[0].LogProbability);
    }

    [Fact]
    public async Task TheSessionEngineHonoursBiasLogprobsAndN()
    {
        // Sessions made outside the rank groups run through SessionEngine and the Generator: the same sampling there.
        var probe = new ProbeSessions();
        await using var server = await Harness.StartAsync(Harness.Model(probe.New));
        using var http = Harness.Http(server);
        int forced = Harness.Bundle.Tokenizer.Encode(" river", addSpecialTokens: false)[0];
        var (status, body) = await Harness.PostAsync(http, "/v1/completions",
            $$$"""{"prompt": "Once upon a time", "max_tokens": 3, "temperature": 0, "n": 2, "logprobs": 2, "logit_bias": {"{{{forced}}}": 100}}""");
        Assert.Equal(200, status);
        var choices = body.GetProperty("choices").EnumerateArray().ToArray();
        Assert.Equal(2, choices.Length);
        string piece = Harness.Bundle.Tokenizer.Decode([forced]);
        foreach (var c in choices)
        {
            Assert.Equal(string.Concat(Enumerable.Repeat(piece, 3)), c.GetProperty("text").GetString());
            Assert.Equal(3, c.GetProperty("logprobs").GetProperty("token_logprobs").GetArrayLength());
        }
        Assert.Equal(0, probe.Live);
    }

    [Fact]
    public async Task PenaltiesLowerTheLogitsOfTokensAlreadyPicked()
    {
        // Greedy with penalties picks, at each position, the best of (logprob - count x frequency - presence if picked):
        // the logprobs are the model's own (before penalties), so the choice can be recomputed from them exactly. The
        // best unpenalized token is always among the top 20 (at most 10 tokens are penalized here).
        const double frequency = 1.5, presence = 1;
        var (status, body) = await Harness.PostAsync(shared.Http, "/v1/chat/completions",
            $$"""{"messages": [{{User}}], "max_tokens": 10, "temperature": 0, "logprobs": true, "top_logprobs": 20, "frequency_penalty": {{frequency}}, "presence_penalty": {{presence}}}""");
        Assert.Equal(200, status);
        var counts = new Dictionary<string, int>();
        int changed = 0;
        foreach (var t in body.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content").EnumerateArray())
        {
            var alternatives = t.GetProperty("top_logprobs").EnumerateArray()
                .Select(a => (Token: a.GetProperty("token").GetString()!, Logprob: a.GetProperty("logprob").GetDouble())).ToList();
            double Adjusted((string Token, double Logprob) a) =>
                a.Logprob - counts.GetValueOrDefault(a.Token) * frequency - (counts.ContainsKey(a.Token) ? presence : 0);
            string expected = alternatives.MaxBy(Adjusted).Token;
            string picked = t.GetProperty("token").GetString()!;
            Assert.Equal(expected, picked);
            if (picked != alternatives[0].Token) changed++;
            counts[picked] = counts.GetValueOrDefault(picked) + 1;
        }
        Assert.True(changed > 0, "the penalties never changed a pick: this test would pass with them ignored; use a longer generation");
    }

    [Fact]
    public async Task NChoicesComeBackIndexedAndDifferWithASeed()
    {
        var (status, body) = await Harness.PostAsync(shared.Http, "/v1/chat/completions",
            $$"""{"messages": [{{User}}], "max_tokens": 6, "n": 3, "temperature": 1.5, "seed": 11}""");
        Assert.Equal(200, status);
        var choices = body.GetProperty("choices").EnumerateArray().ToArray();
        Assert.Equal([0, 1, 2], choices.Select(c => c.GetProperty("index").GetInt32()));
        var texts = choices.Select(c => c.GetProperty("message").GetProperty("content").GetString()).ToArray();
        Assert.True(texts.Distinct().Count() > 1, "three seeded samples at temperature 1.5 were all equal");
        var usage = body.GetProperty("usage");
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32() + usage.GetProperty("completion_tokens").GetInt32(), usage.GetProperty("total_tokens").GetInt32());
        // The same request again: the same three samples (choice i samples with seed + i).
        var (_, again) = await Harness.PostAsync(shared.Http, "/v1/chat/completions",
            $$"""{"messages": [{{User}}], "max_tokens": 6, "n": 3, "temperature": 1.5, "seed": 11}""");
        Assert.Equal(texts, again.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("message").GetProperty("content").GetString()));
    }

    [Fact]
    public async Task StreamedNChoicesEachEndWithTheirFinishReason()
    {
        var (status, events) = await Harness.StreamAsync(shared.Http, "/v1/completions",
            """{"prompt": "Once upon a time", "max_tokens": 4, "n": 2, "temperature": 0, "logprobs": 2, "stream": true}""");
        Assert.Equal(200, status);
        Assert.Equal("[DONE]", events[^1]);
        var text = new[] { new StringBuilder(), new StringBuilder() };
        var finishes = new string?[2];
        foreach (var e in events.SkipLast(1))
        {
            var choice = JsonDocument.Parse(e).RootElement.GetProperty("choices")[0];
            int i = choice.GetProperty("index").GetInt32();
            text[i].Append(choice.GetProperty("text").GetString());
            if (choice.GetProperty("finish_reason").GetString() is { } f)
            {
                finishes[i] = f;
                var lp = choice.GetProperty("logprobs");
                Assert.Equal(lp.GetProperty("tokens").GetArrayLength(), lp.GetProperty("token_logprobs").GetArrayLength());
                Assert.All(lp.GetProperty("top_logprobs").EnumerateArray(), t => Assert.InRange(t.EnumerateObject().Count(), 1, 2));
            }
        }
        Assert.All(finishes, f => Assert.NotNull(f));
        Assert.Equal(text[0].ToString(), text[1].ToString()); // greedy: both choices alike
    }

    [Fact]
    public async Task LegacyCompletionLogprobsHaveParallelListsAndOffsets()
    {
        var (status, body) = await Harness.PostAsync(shared.Http, "/v1/completions",
            """{"prompt": "Once upon a time", "max_tokens": 5, "temperature": 0, "logprobs": 3}""");
        Assert.Equal(200, status);
        var choice = body.GetProperty("choices")[0];
        var lp = choice.GetProperty("logprobs");
        var tokens = lp.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToArray();
        var offsets = lp.GetProperty("text_offset").EnumerateArray().Select(o => o.GetInt32()).ToArray();
        Assert.Equal(body.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), tokens.Length);
        for (int i = 1; i < tokens.Length; i++) Assert.Equal(offsets[i - 1] + tokens[i - 1].Length, offsets[i]);
        Assert.All(lp.GetProperty("top_logprobs").EnumerateArray(), t => Assert.Equal(3, t.EnumerateObject().Count()));
    }

    [Fact]
    public async Task JsonResponseFormatIsRefusedNamingIt()
    {
        var chat = Harness.OpenAiChat(shared.Server);
        var options = Greedy(4);
        options.ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat();
        var e = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage(Question)], options));
        Assert.Equal(400, e.Status);
        Assert.Contains("response_format", e.Message);
        Assert.Contains("constrained decoding", e.Message);
        // {"type": "text"} is what the server does anyway: accepted.
        options.ResponseFormat = ChatResponseFormat.CreateTextFormat();
        ChatCompletion ok = await chat.CompleteChatAsync([new UserChatMessage(Question)], options);
        Assert.NotNull(ok.Content);
    }

    public static TheoryData<string, string, string, string> Refused => new()
    {
        // path, body, param, words
        { "/v1/chat/completions", $$$"""{"messages": [{{{User}}}], "repetition_penalty": 1.1}""", "repetition_penalty", "Unrecognized request argument supplied: 'repetition_penalty'" },
        { "/v1/chat/completions", $$$"""{"messages": [{{{User}}}], "metadata": {"a": "b"}}""", "metadata", "Unrecognized request argument" },
        { "/v1/completions", """{"prompt": "a", "min_p": 0.1}""", "min_p", "Unrecognized request argument" },
        { "/tokenize", """{"prompt": "a", "tokens": [1]}""", "tokens", "Unrecognized request argument" },
        { "/v1/chat/completions", $$$"""{"messages": [{{{User}}}], "frequency_penalty": 2.5}""", "frequency_penalty", "[-2, 2]" },
        { "/v1/chat/completions", $$$"""{"messages": [{{{User}}}], "presence_penalty": -3}""", "presence_penalty", "[-2, 2]" },
        { "/v1/chat/completions", $$$"""{"messages": [{{{User}}}], "logit_bias": {"abc": 1}}""", "logit_bias.abc", "not a token id" },
        { "/v1/chat/completions", $$$"""{"messages": [{{{User}}}], "logit_bias": {"5": 101}}""", "logit_bias.5", "[-100, 100]" },
        { "/v1/chat/completions", $$$"""{"messages": [{{{User}}}], "logit_bias": {"999999": 1}}""", "logit_bias.999999", "not a token id" },
        { "/v1/chat/completions", $$$"""{"messages": [{{{User}}}], "logit_bias": [1]}""", "logit_bias", "expected an object" },
        { "/v1/chat/completions", $$$"""{"messages": [{{{User}}}], "top_logprobs": 2}""", "top_logprobs", "needs 'logprobs': true" },
        { "/v1/chat/completions", $$$"""{"messages": [{{{User}}}], "logprobs": true, "top_logprobs": 21}""", "top_logprobs", "0..20" },
        { "/v1/chat/completions", $$$"""{"messages": [{{{User}}}], "n": 17}""", "n", "1 to 16 choices" },
        { "/v1/chat/completions", $$$"""{"messages": [{{{User}}}], "n": 0}""", "n", "1 to 16 choices" },
        { "/v1/chat/completions", $$$"""{"messages": [{{{User}}}], "response_format": {"type": "json_schema", "json_schema": {"name": "x"} }}""", "response_format", "constrained decoding" },
        { "/v1/chat/completions", $$$"""{"messages": [{{{User}}}], "tool_choice": "required"}""", "tool_choice", "calls no tools" },
        { "/v1/completions", """{"prompt": "a", "logprobs": 30}""", "logprobs", "0..20" },
        { "/v1/completions", """{"prompt": "a", "n": 2, "best_of": 3}""", "best_of", "best_of = n" },
    };

    [Theory]
    [MemberData(nameof(Refused))]
    public async Task UnsupportedOrUnknownParametersAreRefusedByName(string path, string body, string param, string words)
    {
        var (status, error) = await Harness.PostAsync(shared.Http, path, body);
        Assert.Equal(400, status);
        var e = error.GetProperty("error");
        Assert.Equal(param, e.GetProperty("param").GetString());
        Assert.Contains(words, e.GetProperty("message").GetString());
    }

    [Fact]
    public async Task TheUserFieldIsAccepted()
    {
        var chat = Harness.OpenAiChat(shared.Server);
        var options = Greedy(2);
        options.EndUserId = "user-1234";
        ChatCompletion c = await chat.CompleteChatAsync([new UserChatMessage(Question)], options);
        Assert.InRange(c.Usage.OutputTokenCount, 1, 2);
    }
}
