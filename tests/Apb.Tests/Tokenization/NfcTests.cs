using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.Tokenization;

/// <summary>Our NFC (the product runs with InvariantGlobalization, where string.Normalize does nothing for non-ASCII).</summary>
public class NfcTests
{
    [Theory]
    [InlineData("e\u0301", "\u00E9")]
    [InlineData("\u00E9", "\u00E9")]
    [InlineData("a\u0302\u0323", "\u1EAD")]          // reordered (dot below first), then composed
    [InlineData("a\u0323\u0302", "\u1EAD")]
    [InlineData("\u1100\u1161\u11A8", "\uAC01")]     // Hangul jamo L V T
    [InlineData("\uAC00\u11A8", "\uAC01")]           // LV syllable + T
    [InlineData("\u212B", "\u00C5")]                 // Angstrom sign: singleton decomposition
    [InlineData("\u0344", "\u0308\u0301")]           // excluded: stays decomposed
    [InlineData("\u0F73", "\u0F71\u0F72")]           // non-starter decomposition
    [InlineData("x\u0301\u0301", "x\u0301\u0301")]   // blocked second accent
    [InlineData("\u0301e", "\u0301e")]               // leading combining mark
    [InlineData("plain ascii", "plain ascii")]
    [InlineData("𝐀\u0301", "𝐀\u0301")]
    [InlineData("\U0001D15E", "\U0001D157\U0001D165")] // musical symbol: composition-excluded
    public void ComposesCanonically(string input, string expected) => Assert.Equal(expected, Nfc.Normalize(input));

    [Fact]
    public void AlreadyNormalTextIsReturnedAsIs()
    {
        const string text = "Straße 日本語 한국어 🙂 naïve";
        Assert.Same(text, Nfc.Normalize(text));
    }
}
