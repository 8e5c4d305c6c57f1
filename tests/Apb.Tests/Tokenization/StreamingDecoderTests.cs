using System.Text;
using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.Tokenization;

public class StreamingDecoderTests
{
    [Theory]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    [InlineData("llama2")]                 // <0xNN> byte-fallback tokens, leading space stripped
    [InlineData("yi")]
    public void MultiByteCharactersSplitAcrossTokensComeOutWhole(string name)
    {
        var t = TokenizerFixtures.Get(name).Ours;
        string text = "Emoji 🤖🧑‍🤝‍🧑 and 𠀀𠀁, CJK 鑫龘鱻 齉 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢; 🇯🇵 flags.";
        var ids = t.Encode(text, addSpecialTokens: false);
        // The scenario under test: some character spans several tokens.
        Assert.Contains(ids, id => !IsValidUtf8(t.TokenBytes(id)));

        var decoder = new StreamingDecoder(t);
        var pieces = ids.Select(decoder.Push).ToList();
        pieces.Add(decoder.Flush());
        Assert.Equal(text, string.Concat(pieces));
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        Assert.Contains("", pieces); // held back mid-character
        Assert.All(pieces, p => Assert.False(p.Length > 0 && char.IsHighSurrogate(p[^1]), "a piece ends inside a surrogate pair"));
    }

    [Theory]
    [InlineData("llama3", true)]
    [InlineData("qwen3", false)]
    [InlineData("llama2", true)]
    [InlineData("llama2", false)]
    [InlineData("yi", true)]
    [InlineData("llama2-non-legacy", true)]
    [InlineData("llama2-metaspace-split", false)]
    public void StreamEqualsDecodeOnRandomText(string name, bool skipSpecialTokens)
    {
        var t = TokenizerFixtures.Get(name).Ours;
        var random = new RandomText(11);
        for (int i = 0; i < 300; i++)
        {
            var ids = t.Encode(random.Text());
            var decoder = new StreamingDecoder(t, skipSpecialTokens);
            var sb = new StringBuilder();
            foreach (int id in ids) sb.Append(decoder.Push(id));
            sb.Append(decoder.Flush());
            Assert.Equal(t.Decode(ids, skipSpecialTokens), sb.ToString());
        }
    }

    [Fact]
    public void InvalidBytesBecomeReplacementCharacters()
    {
        var t = TokenizerFixtures.Llama3.Ours;
        int byteToken(byte b) => t.TokenToId(ByteLevelChar(b))!.Value;
        var decoder = new StreamingDecoder(t);
        Assert.Equal("\uFFFD", decoder.Push(byteToken(0x80)));   // a continuation byte can never start a character
        Assert.Equal("", decoder.Push(byteToken(0xE4)));         // start of a 3-byte character: wait
        Assert.Equal("\uFFFDa", decoder.Push(t.TokenToId("a")!.Value)); // broken by an ASCII byte
        Assert.Equal("", decoder.Push(byteToken(0xF0)));
        Assert.Equal("\uFFFD", decoder.Flush());
        Assert.Equal("", decoder.Flush());
        Assert.Equal("", decoder.Push(t.TokenToId("<|eot_id|>")!.Value)); // special tokens skipped by default
        Assert.Equal("", decoder.Push(-5));                               // unknown ids too, like HF decode
    }

    [Fact]
    public void ByteFallbackRunsDecodeAsHfDoes()
    {
        var t = TokenizerFixtures.Llama2.Ours;
        int b(int x) => t.TokenToId($"<0x{x:X2}>")!.Value;
        int space = t.TokenToId("▁a")!.Value;

        // "中" is E4 B8 AD: held back until whole, then once; the stream's first space is stripped as HF's Strip does.
        var decoder = new StreamingDecoder(t);
        Assert.Equal("", decoder.Push(b(0xE4)));
        Assert.Equal("", decoder.Push(b(0xB8)));
        Assert.Equal("中", decoder.Push(b(0xAD)));
        Assert.Equal(" a", decoder.Push(space));
        Assert.Equal("中 a", t.Decode([b(0xE4), b(0xB8), b(0xAD), space]));

        // An unfinished run ends as one U+FFFD per byte, in the stream and in HF's decode alike.
        decoder = new StreamingDecoder(t);
        Assert.Equal("", decoder.Push(b(0xE4)));
        Assert.Equal("", decoder.Push(b(0xB8)));
        Assert.Equal("\uFFFD\uFFFD a", decoder.Push(space));
        Assert.Equal("\uFFFD\uFFFD a", t.Decode([b(0xE4), b(0xB8), space]));
        Assert.Equal("\uFFFD", decoder.Push(b(0x80))); // can never start a character
        Assert.Equal("", decoder.Push(b(0xF0)));
        Assert.Equal("\uFFFD", decoder.Flush());

        // A leading space from the first token only: the stream strips it once.
        decoder = new StreamingDecoder(t);
        Assert.Equal("a", decoder.Push(space));
        Assert.Equal(" a", decoder.Push(space));
    }

    private static string ByteLevelChar(byte b)
    {
        // GPT-2's byte alphabet, as the vocabulary spells single-byte tokens.
        int n = 0;
        for (int x = 0; x < 256; x++)
        {
            bool printable = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
            if (x == b) return ((char)(printable ? x : 256 + n)).ToString();
            if (!printable) n++;
        }
        throw new InvalidOperationException();
    }

    private static bool IsValidUtf8(byte[] bytes) => System.Text.Unicode.Utf8.IsValid(bytes);
}
