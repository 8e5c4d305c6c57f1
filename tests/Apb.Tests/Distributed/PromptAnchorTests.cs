using Apb.Engine;
using Apb.Strategies;
using Apb.Tests.Tokenization;
using Xunit;

namespace Apb.Tests.Distributed;

/// <summary>
/// APB's anchor on real chat templates: the query goes in right after the template's header (BOS, system block, user
/// header), so every rank's anchor reads like the start of the real prompt with the question asked up front.
/// </summary>
public class PromptAnchorTests
{
    [Theory]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    public void QueryIsInsertedAfterTheChatHeader(string which)
    {
        var tok = TokenizerFixtures.Get(which).Ours;
        string document = string.Join(" ", Enumerable.Range(0, 300).Select(i => $"word{i % 17}"));
        const string question = "Which word comes after word3?";
        var p = PromptTokens.FromChat(tok, "You are a careful reader.", document, question);

        // The template's text before the user's content: render with a marker for the content and cut there.
        const string marker = "\uE000marker\uE000";
        List<Apb.Tokenization.ChatMessage> Conversation(string user) => [new("system", "You are a careful reader."), new("user", user)];
        string withMarker = tok.ChatTemplate.Render(Conversation(marker), addGenerationPrompt: true);
        var header = tok.Encode(withMarker[..withMarker.IndexOf(marker, StringComparison.Ordinal)], tok.ChatTemplate.EncodeWithSpecialTokens);
        Assert.Equal(header.Count, p.AnchorInsertAt);
        Assert.Equal(header, p.Context.Take(p.AnchorInsertAt));
        Assert.Equal(tok.ChatTemplate.Render(Conversation(document + "\n\n" + question), addGenerationPrompt: true),
            tok.Decode(p.Context) + tok.Decode(p.Query));
        Assert.Contains(question, tok.Decode(p.Query));

        var plan = SequencePlan.Apb(p.Context.Count, 4, anchor: 128, passing: 16, p.Query.Count, p.AnchorInsertAt);
        var anchor = plan.AnchorIds(p.Context, p.Query);
        Assert.Equal(128, anchor.Length);
        Assert.Equal(header, anchor.Take(p.AnchorInsertAt));
        Assert.Equal(p.Query, anchor.Skip(p.AnchorInsertAt).Take(p.Query.Count));
        Assert.Equal(p.Context.Skip(p.AnchorInsertAt).Take(128 - p.AnchorInsertAt - p.Query.Count),
            anchor.Skip(p.AnchorInsertAt + p.Query.Count));
    }
}
