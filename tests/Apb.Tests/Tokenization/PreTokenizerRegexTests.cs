using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.Tokenization;

public class PreTokenizerRegexTests
{
    // tiktoken's cl100k pattern, written with possessive quantifiers as some tokenizer.json files carry it.
    private const string Cl100k =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

    [Fact]
    public void PossessiveQuantifiersBecomeAtomicGroups()
    {
        var regex = PreTokenizerRegex.Create(Cl100k, "test");
        Assert.Contains("(?>[^\\r\\n\\p{L}\\p{N}]?)", regex.ToString());
        Assert.Contains("(?>[^\\s\\p{L}\\p{N}]+)", regex.ToString());
        // Splits as Oniguruma does with this pattern (atomic and greedy agree on these inputs; the point is that it parses).
        Assert.Equal(["Hello", ",", " world", "!!!\n", "123", "4", " don", "'t", "!abc"],
            regex.Matches("Hello, world!!!\n1234 don't!abc").Select(m => m.Value));
        Assert.Equal(["{0,3}"], PreTokenizerRegex.Create(@"\d{,3}", "test").ToString().Split('d').Skip(1));
    }

    [Fact]
    public void SourceGeneratedPatternsAreTheTranslations()
    {
        Assert.Equal(PreTokenizerRegex.Llama3Translated, PreTokenizerRegex.Translate(PreTokenizerRegex.Llama3));
        Assert.Equal(PreTokenizerRegex.Qwen2Translated, PreTokenizerRegex.Translate(PreTokenizerRegex.Qwen2));
        Assert.Equal(PreTokenizerRegex.Gpt2, PreTokenizerRegex.Translate(PreTokenizerRegex.Gpt2));
    }

    [Fact]
    public void CaseInsensitiveContractionsFoldLongSAsOnigurumaDoes()
    {
        var regex = PreTokenizerRegex.Create(PreTokenizerRegex.Llama3, "test");
        Assert.Equal(["'ſ", "x", "'S", "x", "'s", "x"], regex.Matches("'ſx'Sx'sx").Select(m => m.Value));
        Assert.Equal("(?i:[sſ]t(?-i:ks))(?i)[kK]", PreTokenizerRegex.Translate("(?i:st(?-i:ks))(?i)k"));
    }

    [Fact]
    public void KnownPatternsAreRecognised()
    {
        Assert.Equal("Llama-3", PreTokenizerRegex.KnownName(PreTokenizerRegex.Llama3));
        Assert.Equal("Qwen2", PreTokenizerRegex.KnownName(PreTokenizerRegex.Qwen2));
        Assert.Null(PreTokenizerRegex.KnownName(Cl100k));
    }

    [Fact]
    public void UnsupportedSyntaxIsAnApbException()
    {
        var e = Assert.Throws<ApbException>(() => PreTokenizerRegex.Create(@"\p{Han}+|\s+", "tokenizer.json: pre_tokenizer.pattern.Regex"));
        Assert.Contains("pre_tokenizer.pattern.Regex", e.Message);
        Assert.Contains(@"\p{Han}", e.Message);
    }
}
