using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.Tokenization;

/// <summary>
/// Expected strings are what the real Jinja templates render (jinja2 with transformers' trim_blocks/lstrip_blocks,
/// on the tokenizer_config.json files of the npm fixtures), checked here with our interpreter.
/// </summary>
public class ChatTemplateTests
{
    private static ChatMessage M(string role, string content) => new(role, content);

    [Fact]
    public void Llama3RendersLikeItsTemplate()
    {
        var template = TokenizerFixtures.Llama3.Ours.ChatTemplate;
        Assert.Equal("jinja", template.Name);
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            template.Render([M("system", "You are a helpful assistant."), M("user", "What is 2+2?")], true));
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant" +
            "<|end_header_id|>\n\nHello! How can I help?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nTell me a joke." +
            "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            template.Render([M("user", "Hi there"), M("assistant", "Hello! How can I help?"), M("user", "  Tell me a joke.\n")], true));
        // This copy of the template (npm's Llama-3) writes the assistant header whether or not it is asked for.
        Assert.EndsWith("4<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            template.Render([M("system", "Be brief."), M("user", "2+2?"), M("assistant", "4")], false));
        // Llama-3.1's copy honours add_generation_prompt.
        Assert.EndsWith("4<|eot_id|>",
            TokenizerFixtures.Llama31.Ours.ChatTemplate.Render([M("system", "Be brief."), M("user", "2+2?"), M("assistant", "4")], false));
    }

    [Fact]
    public void Qwen3RendersLikeItsTemplate()
    {
        var template = TokenizerFixtures.Qwen3.Ours.ChatTemplate;
        Assert.Equal("jinja", template.Name);
        Assert.Equal(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
            template.Render([M("system", "You are a helpful assistant."), M("user", "What is 2+2?")], true));
        Assert.Equal(
            "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n" +
            "<|im_start|>user\n  Tell me a joke.\n<|im_end|>\n<|im_start|>assistant\n",
            template.Render([M("user", "Hi there"), M("assistant", "Hello! How can I help?"), M("user", "  Tell me a joke.\n")], true));
        Assert.Equal(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n4<|im_end|>\n",
            template.Render([M("system", "Be brief."), M("user", "2+2?"), M("assistant", "4")], false));
        // Reasoning is dropped from turns before the last query and kept after it.
        Assert.Equal(
            "<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n<|im_start|>user\nq2<|im_end|>\n" +
            "<|im_start|>assistant\n<think>\nr2\n</think>\n\na2<|im_end|>\n",
            template.Render([M("user", "q1"), M("assistant", "<think>\nr1\n</think>\n\na1"), M("user", "q2"),
                M("assistant", "<think>\nr2\n</think>\n\na2")], false));
        // enable_thinking=false (a template argument) closes an empty think block in the generation prompt.
        var noThinking = template.WithArguments(new Dictionary<string, object?> { ["enable_thinking"] = false });
        Assert.Equal("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
            noThinking.Render([M("user", "hi")], true));
    }

    [Fact]
    public void Qwen25WritesItsDefaultSystemMessage()
    {
        var template = TokenizerFixtures.Qwen25.Ours.ChatTemplate;
        Assert.Equal(
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n" +
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
            template.Render([M("user", "hi")], true));
        Assert.Equal("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
            template.Render([M("system", "S"), M("user", "hi")], true));
    }

    [Fact]
    public void RenderedChatEncodesToTheTemplateSpecialTokens()
    {
        var t = TokenizerFixtures.Llama3.Ours;
        string text = t.ChatTemplate.Render([M("user", "hi")], true);
        var ids = t.Encode(text, t.ChatTemplate.EncodeWithSpecialTokens);
        Assert.Equal(t.BosTokenId, ids[0]);
        Assert.Equal(t.TokenToId("<|start_header_id|>"), ids[1]);
        Assert.Single(ids, id => id == t.BosTokenId);
    }

    [Fact]
    public void PlainAndUnsupportedTemplates()
    {
        var plain = ChatTemplate.FromConfig(null, null);
        Assert.Equal("plain", plain.Name);
        Assert.True(plain.EncodeWithSpecialTokens);
        Assert.Equal("S\n\nU\n\nA", plain.Render([M("system", "S"), M("user", "U"), M("assistant", "A")], true));

        var other = ChatTemplate.FromConfig("{% for m in messages %}\n{% include 'turn.jinja' %}{% endfor %}", "<bos>", null,
            "/models/gemma/tokenizer_config.json");
        Assert.Equal("unsupported", other.Name);
        var e = Assert.Throws<ApbException>(() => other.Render([M("user", "x")], true));
        Assert.Contains("/models/gemma/tokenizer_config.json", e.Message);
        Assert.Contains("line 2", e.Message);
        Assert.Contains("include", e.Message);
    }
}
