using Apb.Engine;
using Apb.Tests.Tokenization;
using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.Server;

/// <summary>
/// Tokenization bounded by the context (issue #16): with a limit, Encode is the whole encoding when it fits and stops
/// soon after the limit when it does not, and the prompt builders refuse a prompt past it without encoding all of it.
/// </summary>
public class PromptBoundTests
{
    public static TheoryData<string> Tokenizers => new() { "llama3", "qwen3", "gpt2-shape", "added-token-flags" };

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void EncodeWithALimitIsTheWholeEncodingOrAPrefixPastTheLimit(string name)
    {
        var tok = TokenizerFixtures.Get(name).Ours;
        var text = new RandomText(seed: 16);
        for (int i = 0; i < 300; i++)
        {
            string s = text.Text(40);
            var full = tok.Encode(s, addSpecialTokens: false);
            int limit = text.Next(full.Count + 4);
            var bounded = tok.Encode(s, addSpecialTokens: false, limit);
            if (full.Count <= limit)
                Assert.Equal(full, bounded);
            else
            {
                Assert.True(bounded.Count > limit, $"{name}: {bounded.Count} ids for a text of {full.Count} with limit {limit}");
                // Pieces are encoded in order and each one whole: what came out is the start of the full encoding.
                Assert.Equal(full.Take(bounded.Count), bounded);
            }
        }
    }

    [Fact]
    public void ATextFarPastTheLimitCostsWorkInProportionToTheLimit()
    {
        var tok = TokenizerFixtures.Llama3.Ours;
        string text = string.Concat(Enumerable.Repeat("lorem ipsum dolor sit amet, consectetur adipiscing. ", 100_000)); // 5.2M chars
        tok.Encode(text[..1000], addSpecialTokens: false, 10); // warm

        long before = GC.GetAllocatedBytesForCurrentThread();
        var ids = tok.Encode(text, addSpecialTokens: false, 1000);
        long bounded = GC.GetAllocatedBytesForCurrentThread() - before;
        before = GC.GetAllocatedBytesForCurrentThread();
        int all = tok.Encode(text, addSpecialTokens: false).Count;
        long unbounded = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.InRange(ids.Count, 1001, 1100);
        Assert.True(all > 500_000, $"{all} tokens");
        // What remains is a copy of the text or two (added-token segments); counting every token also makes a piece and
        // an id for each of them.
        Assert.True(bounded * 10 < unbounded, $"bounded {bounded / 1e6:F1} MB, unbounded {unbounded / 1e6:F1} MB");
    }

    [Fact]
    public void PromptBuildersRefuseAPromptPastTheLimit()
    {
        var tok = TokenizerFixtures.Qwen3.Ours;
        string document = string.Concat(Enumerable.Repeat("The mill grinds grain for the village. ", 200));
        var fits = PromptTokens.FromChat(tok, null, document, "What does the mill grind?");
        var atTheLimit = PromptTokens.FromChat(tok, null, document, "What does the mill grind?", fits.Count);
        Assert.Equal(fits.Context, atTheLimit.Context);
        Assert.Equal(fits.Query, atTheLimit.Query);
        Assert.Equal(fits.AnchorInsertAt, atTheLimit.AnchorInsertAt);

        var e = Assert.Throws<PromptTooLongException>(() => PromptTokens.FromChat(tok, null, document, "What does the mill grind?", fits.Count - 1));
        Assert.Equal(fits.Count - 1, e.MaxTokens);
        Assert.Contains($"more than {fits.Count - 1} tokens", e.Message);
        Assert.Throws<PromptTooLongException>(() => PromptTokens.FromText(tok, document, 100));
        Assert.Throws<PromptTooLongException>(() => PromptTokens.FromParts(tok, document, "q?", 100));
    }
}
