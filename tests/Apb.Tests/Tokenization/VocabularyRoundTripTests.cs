using System.Text;
using Xunit;

namespace Apb.Tests.Tokenization;

/// <summary>Every token of both real vocabularies: its bytes, its decoding and the encoding of its text, against HF.</summary>
public class VocabularyRoundTripTests
{
    private static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    [Theory]
    [InlineData("llama3", 128256, 256)]
    [InlineData("qwen3", 151669, 26)]
    public void EveryTokenDecodesAndReEncodesLikeHf(string name, int vocabSize, int addedTokens)
    {
        var t = TokenizerFixtures.Get(name);
        Assert.Equal(vocabSize, t.Ours.VocabSize);
        int single = 0, checkedTexts = 0;
        var mismatches = new List<string>();
        for (int id = 0; id < t.Ours.VocabSize; id++)
        {
            if (t.Ours.IsSpecial(id)) continue;
            byte[] bytes = t.Ours.TokenBytes(id);
            string decoded = t.Ours.Decode([id]);
            Assert.Equal(t.Hf.Decode([(uint)id]), decoded);

            string text;
            try { text = StrictUtf8.GetString(bytes); }
            catch (DecoderFallbackException)
            {
                // Part of a multi-byte character: decodes to U+FFFD on its own, like HF.
                Assert.Contains('\uFFFD', decoded);
                continue;
            }
            Assert.Equal(bytes, Encoding.UTF8.GetBytes(decoded));

            var hf = t.Hf.Encode(text);
            var ours = t.Ours.Encode(text);
            checkedTexts++;
            if (!hf.Select(x => (int)x).SequenceEqual(ours) && mismatches.Count < 10)
                mismatches.Add($"id {id} {EncodeMatchesHfTests.Escape(text)}: hf [{string.Join(", ", hf)}] ours [{string.Join(", ", ours)}]");
            if (hf.Length == 1 && hf[0] == id) single++;
        }
        Assert.True(mismatches.Count == 0, string.Join("\n", mismatches));
        // Most tokens encode to themselves; the rest are merged differently in context (e.g. Llama-3 tokens that
        // ignore_merges reaches but the pre-tokenizer splits), which the comparison above covers.
        Assert.True(single > (vocabSize - addedTokens) * 0.9, $"only {single} of {checkedTexts} token texts encode to themselves");
    }

    [Fact]
    public void SpecialTokensAreTheirText()
    {
        var t = TokenizerFixtures.Llama3.Ours;
        int eot = t.TokenToId("<|eot_id|>")!.Value;
        Assert.True(t.IsSpecial(eot));
        Assert.Equal("<|eot_id|>"u8.ToArray(), t.TokenBytes(eot));
        Assert.Equal("<|eot_id|>", t.IdToToken(eot));
        Assert.Equal("", t.Decode([eot], skipSpecialTokens: true));
        Assert.Equal("a<|eot_id|>", t.Decode([t.TokenToId("a")!.Value, eot]));
        Assert.Equal("Ġthe", t.IdToToken(t.TokenToId("Ġthe")!.Value));
        Assert.Null(t.TokenToId("no such token"));
        Assert.Null(t.IdToToken(t.VocabSize));
        Assert.False(t.IsSpecial(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => t.TokenBytes(t.VocabSize));
    }

    [Fact]
    public void ConfigNamesTheSpecialTokens()
    {
        var llama = TokenizerFixtures.Llama3.Ours;
        Assert.Equal(128000, llama.BosTokenId);
        Assert.Equal(128001, llama.EosTokenId);
        Assert.Null(llama.PadTokenId);
        Assert.Equal("byte-level BPE (Llama-3 style, ignore_merges), 128256 tokens, 256 special", llama.Kind);

        var qwen = TokenizerFixtures.Qwen3.Ours;
        Assert.Null(qwen.BosTokenId);
        Assert.Equal(qwen.TokenToId("<|im_end|>"), qwen.EosTokenId);
        Assert.Equal(qwen.TokenToId("<|endoftext|>"), qwen.PadTokenId);
        Assert.Equal("byte-level BPE (Qwen2 style, NFC), 151669 tokens, 14 special", qwen.Kind);
        Assert.False(qwen.IsSpecial(qwen.TokenToId("<think>")!.Value)); // an added token, but not special
    }
}
