using Apb.Engine;
using Apb.Serving;
using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.Server;

/// <summary>The parts under the server: stop sequences, the document / question cut, token budgets, admission.</summary>
public class ServingPiecesTests
{
    static string Run(StopSequenceFilter f, params string[] pieces) => string.Concat(pieces.Select(f.Push)) + f.Flush();

    [Fact]
    public void StopSequenceSplitOverPiecesIsCutAndNeverEmitted()
    {
        var f = new StopSequenceFilter(["END", "##"]);
        Assert.Equal("abc", f.Push("abc"));
        Assert.Equal("x", f.Push("xE"));  // "E" might start "END": held back
        Assert.Equal("", f.Push("N"));
        Assert.Equal("", f.Push("D and more"));
        Assert.True(f.Stopped);
        Assert.Equal("", f.Flush());

        Assert.Equal("one EN two", Run(new StopSequenceFilter(["END"]), "one E", "N two"));
        Assert.Equal("tail #", Run(new StopSequenceFilter(["##"]), "tail #"));
        Assert.Equal("a", Run(new StopSequenceFilter(["bc", "b"]), "ab", "c"));
        Assert.Equal("no stops", Run(new StopSequenceFilter([]), "no ", "stops"));
    }

    static HfTokenizer Tokenizer(string? chatTemplate)
    {
        if (chatTemplate is null) return Harness.Bundle.Tokenizer;
        string dir = Path.Combine(Path.GetTempPath(), "apb-serving-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string config = Path.Combine(dir, "tokenizer_config.json");
            File.WriteAllText(config, System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string>
            {
                ["chat_template"] = chatTemplate, ["eos_token"] = "<|im_end|>", ["bos_token"] = "<|begin_of_text|>",
            }));
            return HfTokenizer.Load(Path.Combine(Repo.TinyModel, "tokenizer.json"), config);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    public static TheoryData<string?> Templates => new()
    {
        null, // the random-weight fixture's own: plain
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}",
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}",
    };

    [Theory]
    [MemberData(nameof(Templates))]
    public void ChatPromptIsCutAtTheLastParagraphOfTheLastUserTurn(string? template)
    {
        var tok = Tokenizer(template);
        var t = tok.ChatTemplate;
        List<ChatMessage> single = [new("system", "Be brief."), new("user", "Part one.\n\nPart two.\n\nWhat is in part two?")];
        List<ChatMessage> multi = [new("user", "First question?"), new("assistant", "First answer."), new("user", "A document.\n\nSecond question?")];
        List<ChatMessage> noBlank = [new("user", "Just a question?")];
        foreach (var (messages, question) in new[] { (single, "What is in part two?"), (multi, "Second question?") })
        {
            var p = PromptTokens.FromChat(tok, messages);
            string context = tok.Decode(p.Context), query = tok.Decode(p.Query);
            Assert.Equal(t.Render(messages, addGenerationPrompt: true), context + query);
            Assert.DoesNotContain(question, context);
            Assert.StartsWith("\n\n" + question, query);
        }
        // Without a blank line the whole user text is document (a long single paragraph must not become a query that
        // every rank's anchor has to hold); the query is the end of turn and the assistant header.
        var whole = PromptTokens.FromChat(tok, noBlank);
        Assert.Equal(t.Render(noBlank, addGenerationPrompt: true), tok.Decode(whole.Context) + tok.Decode(whole.Query));
        Assert.Contains("Just a question?", tok.Decode(whole.Context));
        Assert.DoesNotContain("question", tok.Decode(whole.Query));
        // The [system, user] case is cut right before the question's blank line.
        string rendered = t.Render(single, addGenerationPrompt: true);
        int cut = rendered.IndexOf("\n\nWhat is in part two?", StringComparison.Ordinal);
        var ps = PromptTokens.FromChat(tok, single);
        Assert.Equal(rendered[..cut], tok.Decode(ps.Context));
        Assert.Equal(rendered[cut..], tok.Decode(ps.Query));
    }

    [Fact]
    public void TextPromptIsCutAtTheLastBlankLine()
    {
        var tok = Harness.Bundle.Tokenizer;
        var p = PromptTokens.FromText(tok, "Doc line.\n\nMore doc.\n\nQuestion?");
        Assert.Equal("Doc line.\n\nMore doc.", tok.Decode(p.Context).TrimStart());
        Assert.Equal("\n\nQuestion?", tok.Decode(p.Query));
        var whole = PromptTokens.FromText(tok, "no blank line");
        Assert.Empty(whole.Query);
    }

    [Fact]
    public void TokenBudgetFollowsTheContextWindow()
    {
        Assert.Equal(100, TokenBudget.Resolve(1000, 10, null, 100));
        Assert.Equal(90, TokenBudget.Resolve(100, 10, null, 1024));   // the default shrinks to fit
        Assert.Equal(90, TokenBudget.Resolve(100, 10, 90, 1024));
        Assert.Equal("context_length_exceeded", Assert.Throws<InvalidRequestException>(() => TokenBudget.Resolve(100, 10, 91, 1)).Code);
        Assert.Equal("context_length_exceeded", Assert.Throws<InvalidRequestException>(() => TokenBudget.Resolve(100, 100, null, 1)).Code);
        Assert.Equal("max_tokens", Assert.Throws<InvalidRequestException>(() => TokenBudget.Resolve(100, 10, 0, 1)).Param);
        Assert.Contains("whole context", Assert.Throws<InvalidRequestException>(() => TokenBudget.Resolve(100, 10, 101, 1)).Message);
        Assert.Throws<InvalidRequestException>(() => TokenBudget.Resolve(100, 0, 5, 1));
    }

    [Fact]
    public async Task QueueAdmitsRunsAndRefuses()
    {
        var q = new RequestQueue(concurrency: 1, maxWaiting: 1);
        var first = await q.EnterAsync();
        var second = q.EnterAsync();
        Assert.False(second.IsCompleted);
        Assert.Equal(1, q.Waiting);
        await Assert.ThrowsAsync<QueueFullException>(() => q.EnterAsync());
        first.Dispose();
        first.Dispose(); // twice is harmless
        using (await second.WaitAsync(TimeSpan.FromSeconds(5))) Assert.Equal(1, q.Running);
        Assert.Equal(0, q.Running);
        Assert.Equal(0, q.Waiting);
    }
}
