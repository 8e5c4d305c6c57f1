using System.Text.Json;
using Apb.Tests.Server;
using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.Tokenization;

/// <summary>`apb tokenize` on tokenizer-only folders, and the server's /tokenize and /detokenize.</summary>
public sealed class TokenizeCommandTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"apb-tokenize-{Guid.NewGuid():N}");

    public TokenizeCommandTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Folder(string name) => Path.GetDirectoryName(TokenizerFixtures.Model(name, "tokenizer.json"))!;

    private static JsonElement Json(string text) => JsonDocument.Parse(text).RootElement.Clone();

    [Theory]
    [InlineData("llama2")]
    [InlineData("yi")]
    [InlineData("llama3_1")]
    [InlineData("qwen2_5")]
    public void PromptIdsAreHfs(string name)
    {
        const string text = "Héllo wörld 😀 日本語 — 1234\n\n  spaces";
        var (code, output, err) = CliRun.Apb("tokenize", "--model", Folder(name), "--prompt", text);
        Assert.True(code == 0, err);
        var ids = Json(output).GetProperty("ids").EnumerateArray().Select(e => (uint)e.GetInt32()).ToArray();
        Assert.Equal(TokenizerFixtures.Get(name).Hf.Encode(text), ids);
    }

    [Fact]
    public void MessagesAreRenderedWithTheTemplateAndItsArguments()
    {
        string file = Path.Combine(_dir, "messages.json");
        File.WriteAllText(file, """[{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "2+2?"}]}]""");
        var (code, output, err) = CliRun.Apb("tokenize", "--model", Folder("qwen3"), "--messages", file,
            "--chat-template-kwargs", """{"enable_thinking": false}""");
        Assert.True(code == 0, err);
        var body = Json(output);
        string text = body.GetProperty("text").GetString()!;
        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n", text);
        var ids = body.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(TokenizerFixtures.Qwen3.Ours.Encode(text, addSpecialTokens: false), ids);

        // --chat-template replaces the model's template; Llama-2's folder has none of its own.
        string template = Path.Combine(_dir, "inst.jinja");
        File.WriteAllText(template, "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content }} [/INST]{% endif %}{% endfor %}\n");
        File.WriteAllText(file, """[{"role": "user", "content": "Hi"}]""");
        (code, output, err) = CliRun.Apb("tokenize", "--model", Folder("llama2"), "--messages", file, "--chat-template", template);
        Assert.True(code == 0, err);
        body = Json(output);
        Assert.Equal("<s>[INST] Hi [/INST]", body.GetProperty("text").GetString());
        Assert.Equal(1, body.GetProperty("ids")[0].GetInt32());
        Assert.Equal(1, body.GetProperty("ids").EnumerateArray().Count(e => e.GetInt32() == 1)); // the template's BOS only
    }

    [Theory]
    [InlineData("--prompt", "x", "--messages", "m.json", "exactly one")]
    [InlineData("--messages", "missing.json", null, null, "does not exist")]
    [InlineData("--messages", "bad.json", null, null, "messages[0].role")]
    [InlineData("--prompt", "x", "--chat-template-kwargs", "[1]", "JSON object")]
    [InlineData("--prompt", "x", "--chat-template-kwargs", "{nope", "not valid JSON")]
    [InlineData("--prompt", "x", "--chat-template", "broken.jinja", "line 2")]
    public void BadInputIsAnErrorWithExitCode1(string flag, string value, string? flag2, string? value2, string expected)
    {
        File.WriteAllText(Path.Combine(_dir, "bad.json"), """[{"content": "no role"}]""");
        File.WriteAllText(Path.Combine(_dir, "broken.jinja"), "ok\n{% for x in %}");
        string Arg(string v) => v.EndsWith(".json") || v.EndsWith(".jinja") ? Path.Combine(_dir, v) : v;
        var args = new List<string> { "tokenize", "--model", Folder("qwen3"), flag, Arg(value) };
        if (flag2 is not null) args.AddRange([flag2, Arg(value2!)]);
        var (code, _, err) = CliRun.Apb(args.ToArray());
        Assert.Equal(1, code);
        Assert.Contains(expected, err);
        Assert.DoesNotContain("internal error", err);
    }

    [Fact]
    public void InvalidUtf8InTheTokenizerIsExit1()
    {
        File.WriteAllBytes(Path.Combine(_dir, "tokenizer.json"), [.. "{\"model\": \""u8, 0xFF, .. "\"}"u8]);
        var (code, _, err) = CliRun.Apb("tokenize", "--model", _dir, "--prompt", "x");
        Assert.Equal(1, code);
        Assert.Contains("tokenizer.json is not valid UTF-8", err);
    }

    [Fact]
    public async Task ServerTokenizesAndDetokenizesAsVllm()
    {
        var model = Harness.Model();
        await using var server = await Harness.StartAsync(model);
        using var http = Harness.Http(server);
        var tok = model.Tokenizer;

        var (status, body) = await Harness.PostAsync(http, "/tokenize", """{"prompt": "Hello world"}""");
        Assert.Equal(200, status);
        var ids = body.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(tok.Encode("Hello world"), ids);
        Assert.Equal(ids.Length, body.GetProperty("count").GetInt32());
        Assert.Equal(model.MaxPositions, body.GetProperty("max_model_len").GetInt32());

        (status, body) = await Harness.PostAsync(http, "/tokenize", """{"messages": [{"role": "user", "content": "Hi"}]}""");
        Assert.Equal(200, status);
        string rendered = tok.ChatTemplate.Render([new ChatMessage("user", "Hi")], addGenerationPrompt: true);
        Assert.Equal(tok.Encode(rendered, tok.ChatTemplate.EncodeWithSpecialTokens), body.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()));

        (status, body) = await Harness.PostAsync(http, "/detokenize", $"{{\"tokens\": [{string.Join(", ", ids)}]}}");
        Assert.Equal(200, status);
        Assert.Equal(tok.Decode(ids), body.GetProperty("prompt").GetString());

        (status, body) = await Harness.PostAsync(http, "/detokenize", """{"tokens": [1, -4]}""");
        Assert.Equal(400, status);
        Assert.Equal("tokens[1]", body.GetProperty("error").GetProperty("param").GetString());
        (status, body) = await Harness.PostAsync(http, "/tokenize", "{}");
        Assert.Equal(400, status);
        Assert.Contains("prompt", body.GetProperty("error").GetProperty("message").GetString());
        (status, body) = await Harness.PostAsync(http, "/tokenize", """{"messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": 3}""");
        Assert.Equal(400, status);
        Assert.Equal("chat_template_kwargs", body.GetProperty("error").GetProperty("param").GetString());
        (status, _) = await Harness.PostAsync(http, "/v1/chat/completions",
            """{"messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "chat_template_kwargs": {"enable_thinking": false}}""");
        Assert.Equal(200, status);
    }
}
