using System.Text.Json.Nodes;
using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.Tokenization;

/// <summary>Bad files must fail with an ApbException that names the file or field, what is supported and what was found.</summary>
public sealed class TokenizerLoadErrorTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"apb-tokenizer-errors-{Guid.NewGuid():N}");

    public TokenizerLoadErrorTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A small valid GPT-2-shaped tokenizer: the 256 byte tokens and a few merges.</summary>
    internal static JsonObject SmallTokenizer()
    {
        var vocab = new JsonObject();
        int n = 0, id = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            vocab[((char)(printable ? b : 256 + n++)).ToString()] = id++;
        }
        string[] merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o", "Ġwo r", "r l", "Ġwor l", "Ġworl d"];
        foreach (var m in merges) vocab[m.Replace(" ", "")] = id++;
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = JsonNode.Parse("""[{"id": 266, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}]"""),
            ["normalizer"] = null,
            ["pre_tokenizer"] = JsonNode.Parse("""{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}"""),
            ["post_processor"] = JsonNode.Parse("""{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true}"""),
            ["decoder"] = JsonNode.Parse("""{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}"""),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false,
                ["vocab"] = vocab, ["merges"] = new JsonArray(merges.Select(m => (JsonNode)m).ToArray()),
            },
        };
    }

    private string Write(JsonNode json, string name = "tokenizer.json") => Write(json.ToJsonString(), name);

    private string Write(string text, string name)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static ApbException LoadFails(string path, string? config = null) =>
        Assert.Throws<ApbException>(() => HfTokenizer.Load(path, config));

    [Fact]
    public void SmallTokenizerLoadsAndMatchesHf()
    {
        string path = Write(SmallTokenizer());
        var ours = HfTokenizer.Load(path);
        var hf = new Tokenizers.DotNet.Tokenizer(path);
        Assert.Equal("byte-level BPE (GPT-2 style), 267 tokens, 1 special", ours.Kind);
        foreach (string text in new[] { "hello world", "Hello, world!<|endoftext|>hello", "héllo wörld 🙂", "  hello\n\nworld  " })
            EncodeMatchesHfTests.AssertSameIds(hf.Encode(text), ours.Encode(text), text, "small");
        Assert.Equal(2, ours.Encode("hello world").Count);
    }

    [Fact]
    public void MissingFile()
    {
        string path = Path.Combine(_dir, "nope", "tokenizer.json");
        var e = LoadFails(path);
        Assert.Contains(path, e.Message);
        Assert.Contains("does not exist", e.Message);
        var config = LoadFails(Write(SmallTokenizer()), Path.Combine(_dir, "tokenizer_config.json"));
        Assert.Contains("tokenizer_config.json", config.Message);
    }

    [Fact]
    public void BrokenJson()
    {
        var e = LoadFails(Write("{\"model\": {\"type\": \"BPE\", \"vocab\": {", "tokenizer.json"));
        Assert.Contains("not valid JSON", e.Message);
        Assert.Contains("tokenizer.json", e.Message);
        var config = LoadFails(Write(SmallTokenizer()), Write("{ bos_token: ", "tokenizer_config.json"));
        Assert.Contains("tokenizer_config.json", config.Message);
        Assert.Contains("not valid JSON", config.Message);
    }

    [Theory]
    [InlineData("WordPiece")]
    [InlineData("Unigram")]
    [InlineData("WordLevel")]
    public void UnsupportedModelType(string type)
    {
        var json = SmallTokenizer();
        json["model"] = new JsonObject { ["type"] = type, ["vocab"] = new JsonObject { ["[UNK]"] = 0 } };
        var e = LoadFails(Write(json));
        Assert.Contains("model.type", e.Message);
        Assert.Contains($"\"{type}\"", e.Message);
        Assert.Contains("BPE", e.Message);
    }

    [Theory]
    [InlineData("""{"type": "Whitespace"}""", "Whitespace")]
    [InlineData("""{"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, {"type": "ByteLevel"}]}""", "Digits")]
    [InlineData("""{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": false}, {"type": "ByteLevel"}]}""", "Removed")]
    [InlineData("""{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\p{Han}+"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel"}]}""", "\\p{Han}")]
    public void UnsupportedPreTokenizer(string preTokenizer, string named)
    {
        var json = SmallTokenizer();
        json["pre_tokenizer"] = JsonNode.Parse(preTokenizer);
        var e = LoadFails(Write(json));
        Assert.Contains("pre_tokenizer", e.Message);
        Assert.Contains(named, e.Message);
        Assert.Matches("ByteLevel|Supported", e.Message);
    }

    [Theory]
    [InlineData("normalizer", """{"type": "Lowercase"}""", "Lowercase")]
    [InlineData("decoder", """{"type": "WordPiece", "prefix": "##"}""", "WordPiece")]
    [InlineData("post_processor", """{"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0]}""", "RobertaProcessing")]
    public void UnsupportedPipelineStep(string field, string value, string named)
    {
        var json = SmallTokenizer();
        json[field] = JsonNode.Parse(value);
        var e = LoadFails(Write(json));
        Assert.Contains(field, e.Message);
        Assert.Contains(named, e.Message);
        Assert.Contains("expected", e.Message);
    }

    [Fact]
    public void ByteFallbackWithByteLevelIsRefused()
    {
        var json = SmallTokenizer();
        json["model"]!["byte_fallback"] = true;
        var e = LoadFails(Write(json));
        Assert.Contains("byte_fallback", e.Message);
    }

    [Fact]
    public void InvalidUnicodeIsACleanError()
    {
        string good = SmallTokenizer().ToJsonString();
        // A byte that is not UTF-8 in the middle of the file.
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(good);
        bytes[bytes.Length / 2] = 0xFF;
        string broken = Path.Combine(_dir, "broken.json");
        File.WriteAllBytes(broken, bytes);
        var e = LoadFails(broken);
        Assert.Contains(broken, e.Message);
        Assert.Contains("not valid UTF-8", e.Message);
        Assert.Contains($"offset {bytes.Length / 2}", e.Message);

        // A UTF-16 file (as some editors save JSON).
        string utf16 = Path.Combine(_dir, "utf16.json");
        File.WriteAllText(utf16, good, System.Text.Encoding.Unicode);
        e = LoadFails(utf16);
        Assert.Contains(utf16, e.Message);
        Assert.Contains("UTF-16", e.Message);

        // Valid JSON whose \u escape is a lone surrogate: not a string HF (Rust) can hold.
        var json = SmallTokenizer();
        json["added_tokens"]![0]!["content"] = "PLACEHOLDER";
        string lone = Write(json.ToJsonString().Replace("PLACEHOLDER", "\\ud800x"), "lone.json");
        e = LoadFails(lone);
        Assert.Contains(lone, e.Message);
        Assert.Contains("not valid Unicode", e.Message);

        // The same for tokenizer_config.json and chat_template.jinja beside it.
        string tokenizer = Write(SmallTokenizer());
        string config = Path.Combine(_dir, "tokenizer_config.json");
        File.WriteAllBytes(config, [.. "{\"eos_token\": \""u8, 0xC3, 0x28, .. "\"}"u8]);
        e = LoadFails(tokenizer, config);
        Assert.Contains("tokenizer_config.json", e.Message);
        Assert.Contains("not valid UTF-8", e.Message);
        File.WriteAllText(config, "{\"eos_token\": \"\\udc00\"}");
        e = LoadFails(tokenizer, config);
        Assert.Contains("tokenizer_config.json", e.Message);
        File.WriteAllText(config, "{}");
        File.WriteAllBytes(Path.Combine(_dir, "chat_template.jinja"), [.. "{{ messages }}"u8, 0xE2, 0x82]);
        e = LoadFails(tokenizer, config);
        Assert.Contains("chat_template.jinja", e.Message);
        Assert.Contains("not valid UTF-8", e.Message);
    }

    [Fact]
    public void ChatTemplateComesFromTheNamedListOrTheJinjaFileBeside()
    {
        string tokenizer = Write(SmallTokenizer());
        string config = Write("""
            {"eos_token": "<|endoftext|>", "chat_template": [
              {"name": "tool_use", "template": "tools"},
              {"name": "default", "template": "{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"}]}
            """, "tokenizer_config.json");
        var t = HfTokenizer.Load(tokenizer, config);
        Assert.Equal("hi<|endoftext|>", t.ChatTemplate.Render([new ChatMessage("user", "hi")], true));

        // As in transformers, chat_template.jinja beside the config replaces the config's template.
        File.WriteAllText(Path.Combine(_dir, "chat_template.jinja"), "[{{ messages[0].content }}]\n");
        t = HfTokenizer.Load(tokenizer, config);
        Assert.Equal("[hi]", t.ChatTemplate.Render([new ChatMessage("user", "hi")], true));
    }

    [Fact]
    public void ConfigTokenMissingFromVocabulary()
    {
        string config = Write("""{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "<|endoftext|>"}""", "tokenizer_config.json");
        var e = LoadFails(Write(SmallTokenizer()), config);
        Assert.Contains("bos_token", e.Message);
        Assert.Contains("<s>", e.Message);
    }

    [Fact]
    public void ConfigTokensMayBeObjects()
    {
        string config = Write("""{"bos_token": null, "eos_token": {"content": "<|endoftext|>", "special": true}, "pad_token": "<|endoftext|>"}""", "tokenizer_config.json");
        var t = HfTokenizer.Load(Write(SmallTokenizer()), config);
        Assert.Null(t.BosTokenId);
        Assert.Equal(266, t.EosTokenId);
        Assert.Equal(266, t.PadTokenId);
        Assert.Equal("plain", t.ChatTemplate.Name);
    }
}
