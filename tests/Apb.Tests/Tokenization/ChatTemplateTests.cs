using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.Tokenization;

/// <summary>
/// Expected strings are what the real Jinja templates render (jinja2 with transformers' trim_blocks/lstrip_blocks,
/// on the tokenizer_config.json files of the npm fixtures).
/// </summary>
public class ChatTemplateTests
{
    private static ChatMessage M(string role, string content) => new(role, content);

    [Fact]
    public void Llama3RendersLikeItsTemplate()
    {
        var template = TokenizerFixtures.Llama3.Ours.ChatTemplate;
        Assert.Equal("llama3", template.Name);
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            template.Render([M("system", "You are a helpful assistant."), M("user", "What is 2+2?")], true));
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant" +
            "<|end_header_id|>\n\nHello! How can I help?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nTell me a joke." +
            "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            template.Render([M("user", "Hi there"), M("assistant", "Hello! How can I help?"), M("user", "  Tell me a joke.\n")], true));
        // Without the generation prompt, as Meta's template (the npm copy appends the header regardless).
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user" +
            "<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>",
            template.Render([M("system", "Be brief."), M("user", "2+2?"), M("assistant", "4")], false));
        Assert.Equal("<|eot_id|>", template.EndOfTurn);
    }

    [Fact]
    public void Qwen3RendersLikeItsTemplate()
    {
        var template = TokenizerFixtures.Qwen3.Ours.ChatTemplate;
        Assert.Equal("chatml", template.Name);
        Assert.Null(((ChatMlChatTemplate)template).DefaultSystem);
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
        Assert.Throws<ApbException>(() => template.Render([M("narrator", "x")], true));
    }

    [Fact]
    public void Qwen25DefaultSystemMessageIsTakenFromTheTemplate()
    {
        // The part of Qwen2.5's template that matters here.
        const string qwen25 =
            "{%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n" +
            "    {%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n" +
            "    {%- endif %}\n{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endfor %}";
        var template = ChatTemplate.FromConfig(qwen25, null);
        Assert.Equal(
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n" +
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
            template.Render([M("user", "hi")], true));
        Assert.Equal("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
            template.Render([M("system", "S"), M("user", "hi")], true));
        var pieces = template.Split(null, "doc", "q");
        Assert.Equal(template.Render([M("user", "doc\n\nq")], true), pieces.Text);
    }

    public static TheoryData<string?, string, string> SplitCases => new()
    {
        { "You are a helpful assistant.", "A long document.\nWith lines.", "What is it about?" },
        { null, "Document", "Question?" },
        { "  padded system  ", "  leading spaces in the document", "trailing spaces in the question  \n" },
        { null, "", "only a question" },
        { null, "   ", "  " },
        { "s", "doc", "" },
    };

    [Theory]
    [MemberData(nameof(SplitCases))]
    public void SplitPiecesConcatenateToRender(string? system, string document, string question)
    {
        foreach (var template in new[]
                 {
                     TokenizerFixtures.Llama3.Ours.ChatTemplate, TokenizerFixtures.Qwen3.Ours.ChatTemplate, new PlainChatTemplate(),
                 })
        {
            var messages = new List<ChatMessage>();
            if (system is not null) messages.Add(M("system", system));
            messages.Add(M("user", document + "\n\n" + question));
            var pieces = template.Split(system, document, question);
            Assert.Equal(template.Render(messages, true), pieces.Prefix + pieces.Document + pieces.Suffix);
        }
    }

    [Fact]
    public void SplitPutsTheDocumentAloneInTheMiddle()
    {
        var llama = TokenizerFixtures.Llama3.Ours.ChatTemplate.Split("Sys", "The document.", "The question?");
        Assert.Equal("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nSys<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n", llama.Prefix);
        Assert.Equal("The document.", llama.Document);
        Assert.Equal("\n\nThe question?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", llama.Suffix);

        var qwen = TokenizerFixtures.Qwen3.Ours.ChatTemplate.Split(null, "The document.", "The question?");
        Assert.Equal("<|im_start|>user\n", qwen.Prefix);
        Assert.Equal("The document.", qwen.Document);
        Assert.Equal("\n\nThe question?<|im_end|>\n<|im_start|>assistant\n", qwen.Suffix);
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

        var other = ChatTemplate.FromConfig("{% for m in messages %}<start_of_turn>{{ m.content }}{% endfor %}", "<bos>", "/models/gemma/tokenizer_config.json");
        Assert.Equal("unsupported", other.Name);
        var e = Assert.Throws<ApbException>(() => other.Render([M("user", "x")], true));
        Assert.Contains("/models/gemma/tokenizer_config.json", e.Message);
        Assert.Contains("<|im_start|>", e.Message);
    }
}
