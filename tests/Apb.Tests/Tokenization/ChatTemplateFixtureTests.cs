using System.Text.Json;
using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.Tokenization;

/// <summary>
/// Our chat templates against Hugging Face's apply_chat_template on the fixture checkpoints (chat_reference.json, made by
/// tools/make_fixtures.py). transformers 5.x keeps the template in chat_template.jinja, not in tokenizer_config.json.
/// </summary>
public class ChatTemplateFixtureTests
{
    [Theory]
    [InlineData("llama-tiny", "jinja")]
    [InlineData("qwen2-tiny", "jinja")]
    [InlineData("embedded-random", "jinja")]
    public void RenderAndIdsMatchHuggingFace(string fixture, string expectedTemplate)
    {
        string refDir = Repo.Fixture(fixture);
        string modelDir = File.Exists(Path.Combine(refDir, "tokenizer.json")) ? refDir : Repo.TinyModel;
        var tok = HfTokenizer.Load(Path.Combine(modelDir, "tokenizer.json"), Path.Combine(modelDir, "tokenizer_config.json"));
        Assert.Equal(expectedTemplate, tok.ChatTemplate.Name);

        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(refDir, "chat_reference.json")));
        var messages = doc.RootElement.GetProperty("messages").EnumerateArray()
            .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList();
        string rendered = tok.ChatTemplate.Render(messages, addGenerationPrompt: true);
        Assert.Equal(doc.RootElement.GetProperty("rendered").GetString(), rendered);
        var ids = doc.RootElement.GetProperty("rendered_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(ids, tok.Encode(rendered, addSpecialTokens: tok.ChatTemplate.EncodeWithSpecialTokens));
    }
}
