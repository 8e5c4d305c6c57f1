using System.Text;
using System.Text.Json;
using Xunit;

namespace Apb.Tests.Server;

/// <summary>Every way a request can be wrong gets its own 4xx and an OpenAI-style body naming the field.</summary>
[Collection(ServerCollection.Name)]
public class RequestErrorTests(SharedServer shared)
{
    const string Chat = "/v1/chat/completions";
    const string User = """{"role": "user", "content": "Hi"}""";

    public static TheoryData<string, string, int, string?, string> BadChatRequests => new()
    {
        // path, body, status, param, words the message must hold
        { Chat, """{"messages": [""", 400, null, "could not parse the JSON body" },
        { Chat, "", 400, null, "body is empty" },
        { Chat, "[1, 2]", 400, null, "JSON array; expected a JSON object" },
        { Chat, """{"messages": "Hi"}""", 400, "messages", "expected an array of message objects, got string \"Hi\"" },
        { Chat, """{"messages": [5]}""", 400, "messages[0]", "expected an object, got number 5" },
        { Chat, $$"""{"messages": [{{User}}], "temperature": "hot"}""", 400, "temperature", "expected a number, got string \"hot\"" },
        { Chat, $$"""{"messages": [{{User}}], "max_tokens": 1.5}""", 400, "max_tokens", "expected an integer" },
        { Chat, $$"""{"messages": [{{User}}], "stream": "yes"}""", 400, "stream", "expected a boolean" },
        { Chat, $$"""{"messages": [{{User}}], "model": "gpt-4o"}""", 404, "model", "'gpt-4o' does not exist" },
        { Chat, """{"messages": []}""", 400, "messages", "'messages' is empty" },
        { Chat, """{"model": "embedded"}""", 400, "messages", "Missing required parameter: 'messages'" },
        { Chat, """{"messages": [{"role": "robot", "content": "Hi"}]}""", 400, "messages[0].role", "'robot'" },
        { Chat, """{"messages": [{"content": "Hi"}]}""", 400, "messages[0].role", "Missing required parameter" },
        { Chat, """{"messages": [{"role": "user"}]}""", 400, "messages[0].content", "Missing required parameter" },
        { Chat, """{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}""", 400, "messages[0].content[0].type", "text parts only" },
        { Chat, $$"""{"messages": [{{User}}], "max_tokens": 0}""", 400, "max_tokens", "at least 1, got 0" },
        { Chat, $$"""{"messages": [{{User}}], "max_completion_tokens": -3}""", 400, "max_completion_tokens", "at least 1, got -3" },
        { Chat, $$"""{"messages": [{{User}}], "max_tokens": 1000000}""", 400, "max_tokens", "more than the model's whole context of 32768" },
        { Chat, $$"""{"messages": [{{User}}], "temperature": -0.5}""", 400, "temperature", "0 or more" },
        { Chat, $$"""{"messages": [{{User}}], "top_p": 0}""", 400, "top_p", "(0, 1]" },
        { Chat, $$"""{"messages": [{{User}}], "top_p": 1.5}""", 400, "top_p", "(0, 1]" },
        { Chat, $$"""{"messages": [{{User}}], "stop": 5}""", 400, "stop", "a string or an array of strings" },
        { Chat, $$"""{"messages": [{{User}}], "stop": ["ok", ""]}""", 400, "stop[1]", "empty string" },
        { Chat, $$"""{"messages": [{{User}}], "stop": "{{new string('s', 1025)}}"}""", 400, "stop", "at most 1024" },
        { Chat, $$"""{"messages": [{{User}}], "n": 99}""", 400, "n", "1 to 16 choices per request" },
        { "/v1/completions", """{"max_tokens": 3}""", 400, "prompt", "Missing required parameter: 'prompt'" },
        { "/v1/completions", """{"prompt": [1, 2, 99999]}""", 400, "prompt[2]", "outside the vocabulary" },
        { "/v1/completions", """{"prompt": ["a", "b"]}""", 400, "prompt", "one per request" },
        { "/v1/completions", """{"prompt": "a", "echo": true}""", 400, "echo", "not supported" },
        // Issue #16: escaped lone surrogates were 500s ("this is a bug"); int.MaxValue max_tokens must not wrap.
        { Chat, """{"messages": [{"role": "user", "content": "a\ud800b"}]}""", 400, "messages[0].content", "lone surrogate" },
        { Chat, """{"messages": [{"role": "user", "content": [{"type": "text", "text": "\udc00"}]}]}""", 400, "messages[0].content[0].text", "lone surrogate" },
        { Chat, $$"""{"messages": [{{User}}], "stop": "\ud800"}""", 400, "stop", "lone surrogate" },
        { Chat, $$"""{"messages": [{{User}}], "stop": ["ok", "x\udfff"]}""", 400, "stop[1]", "lone surrogate" },
        { Chat, $$"""{"messages": [{{User}}], "model": "\ud800"}""", 400, "model", "lone surrogate" },
        { Chat, """{"messages": [{"role": "\ud800", "content": "Hi"}]}""", 400, "messages[0].role", "lone surrogate" },
        { "/v1/completions", """{"prompt": "\ud800"}""", 400, "prompt", "lone surrogate" },
        { "/v1/completions", """{"prompt": ["\ud800"]}""", 400, "prompt[0]", "lone surrogate" },
        { Chat, $$$"""{"messages": [{{{User}}}], "chat_template_kwargs": {"x": "\ud800"}}""", 400, "chat_template_kwargs", "lone surrogate" },
        { Chat, $$$"""{"messages": [{{{User}}}], "chat_template_kwargs": {"\udc00": 1}}""", 400, "chat_template_kwargs", "lone surrogate" },
        { Chat, $$"""{"messages": [{{User}}], "max_tokens": 2147483647}""", 400, "max_tokens", "more than the model's whole context" },
        { "/v1/completions", """{"prompt": "Hi", "max_tokens": 2147483647}""", 400, "max_tokens", "more than the model's whole context" },
    };

    [Theory]
    [MemberData(nameof(BadChatRequests))]
    public async Task BadRequestGetsItsOwnError(string path, string body, int status, string? param, string words)
    {
        var (got, error) = await Harness.PostAsync(shared.Http, path, body);
        AssertError(error, got, status, param, words);
    }

    [Fact]
    public async Task PromptLongerThanTheContextIsRefused()
    {
        // ~4 tokens per repeat on this tokenizer: well past the 32,768 positions, well under the 1 MiB body limit.
        string text = string.Concat(Enumerable.Repeat("lorem ipsum dolor sit amet ", 12_000));
        string body = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["messages"] = new[] { new Dictionary<string, string> { ["role"] = "user", ["content"] = text } },
        });
        var (status, error) = await Harness.PostAsync(shared.Http, "/v1/chat/completions", body);
        AssertError(error, status, 400, "messages", "maximum context length is 32768 tokens");
        Assert.Equal("context_length_exceeded", error.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task PromptPlusMaxTokensOverTheContextIsRefused()
    {
        var (status, error) = await Harness.PostAsync(shared.Http, "/v1/completions", """{"prompt": "Hi", "max_tokens": 32767}""");
        AssertError(error, status, 400, "max_tokens", "you requested");
    }

    [Fact]
    public async Task OversizedBodyIs413()
    {
        var body = new StringBuilder("{\"prompt\": \"");
        body.Append('x', (int)SharedServer.MaxRequestBytes + 10).Append("\"}");
        var (status, error) = await Harness.PostAsync(shared.Http, "/v1/completions", body.ToString());
        AssertError(error, status, 413, null, "bytes, more than this server accepts");
    }

    [Fact]
    public async Task WrongMethodAndUnknownUrl()
    {
        using var get = await shared.Http.GetAsync("/v1/chat/completions");
        var error = JsonDocument.Parse(await get.Content.ReadAsStringAsync()).RootElement;
        AssertError(error, (int)get.StatusCode, 405, null, "use POST");
        Assert.Equal("POST", get.Content.Headers.Allow.Single());

        using var unknown = await shared.Http.GetAsync("/v1/engines");
        AssertError(JsonDocument.Parse(await unknown.Content.ReadAsStringAsync()).RootElement, (int)unknown.StatusCode, 404, null, "Invalid URL");
    }

    [Fact]
    public async Task ServerKeepsServingAfterBadRequests()
    {
        foreach (var body in new[] { "{", "null", """{"messages": [{"role": "user", "content": 7}]}""" })
        {
            var (status, _) = await Harness.PostAsync(shared.Http, Chat, body);
            Assert.Equal(400, status);
        }
        var (ok, answer) = await Harness.PostAsync(shared.Http, Chat, $$"""{"messages": [{{User}}], "max_tokens": 2}""");
        Assert.Equal(200, ok);
        Assert.Equal("chat.completion", answer.GetProperty("object").GetString());
    }

    static void AssertError(JsonElement body, int status, int expectedStatus, string? param, string words)
    {
        Assert.True(status == expectedStatus, $"status {status}, expected {expectedStatus}: {body}");
        var e = body.GetProperty("error");
        string message = e.GetProperty("message").GetString()!;
        Assert.Contains(words, message);
        Assert.Equal(expectedStatus >= 500 ? "server_error" : "invalid_request_error", e.GetProperty("type").GetString());
        Assert.True(e.TryGetProperty("code", out _), "OpenAI error bodies always carry 'code'");
        Assert.Equal(param, e.GetProperty("param").ValueKind == JsonValueKind.Null ? null : e.GetProperty("param").GetString());
    }
}
