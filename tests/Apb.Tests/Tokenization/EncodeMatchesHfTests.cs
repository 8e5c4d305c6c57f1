using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.Tokenization;

/// <summary>
/// Encode and Decode against Hugging Face's Rust tokenizers on the real files and on variants of them; for "llama2" and
/// "yi" (loaded with their configs) on the pipeline transformers builds for them (see <see cref="TokenizerFixtures"/>).
/// </summary>
public class EncodeMatchesHfTests
{
    private const int RandomCount = 3000;

    public static TheoryData<string> AllShapes => new()
    {
        "llama3", "qwen3", "gpt2-shape", "gpt2-prefix-space", "split-prefix-space", "added-token-flags", "llama3-template-bos",
        "llama3_1", "qwen2_5", "llama2", "yi", "llama2-file", "yi-file", "llama2-non-legacy", "llama2-metaspace-split",
        "llama2-added-tokens",
    };

    [Theory]
    [InlineData("llama3", 1)]
    [InlineData("qwen3", 2)]
    [InlineData("llama3_1", 9)]
    [InlineData("qwen2_5", 10)]
    [InlineData("llama2", 11)]
    [InlineData("yi", 12)]
    public void RandomStringsEncodeAndDecodeLikeHf(string name, int seed)
    {
        var t = TokenizerFixtures.Get(name);
        var random = new RandomText(seed);
        for (int i = 0; i < RandomCount; i++)
        {
            string text = random.Text();
            var ours = t.Ours.Encode(text);
            AssertSameIds(t.Hf.Encode(text), ours, text, name);
            // HF decodes with skip_special_tokens.
            Assert.Equal(t.Hf.Decode(ours.Select(id => (uint)id).ToArray()), t.Ours.Decode(ours, skipSpecialTokens: true));
            if (name is "llama3" or "qwen3")
            {
                // These files' post-processors add nothing, and byte-level decoding gives the (normalized) text back.
                Assert.Equal(ours, t.Ours.Encode(text, addSpecialTokens: false));
                string expected = name == "qwen3" ? Nfc.Normalize(text) : text;
                Assert.Equal(expected, t.Ours.Decode(ours));
            }
        }
    }

    [Theory]
    [MemberData(nameof(AllShapes))]
    public void MultilingualSentencesEncodeAndDecodeLikeHf(string name)
    {
        var t = TokenizerFixtures.Get(name);
        var all = new List<string>(MultilingualText.Sentences) { string.Join("\n\n", MultilingualText.Sentences) };
        foreach (string text in all)
        {
            var ours = t.Ours.Encode(text);
            AssertSameIds(t.Hf.Encode(text), ours, text, name);
            Assert.Equal(t.Hf.Decode(ours.Select(id => (uint)id).ToArray()), t.Ours.Decode(ours, skipSpecialTokens: true));
        }
    }

    [Theory]
    [InlineData("llama2-file", 16)]
    [InlineData("yi-file", 17)]
    [InlineData("llama2-non-legacy", 13)]
    [InlineData("llama2-metaspace-split", 14)]
    [InlineData("llama2-added-tokens", 15)]
    public void SentencePieceShapesEncodeAndDecodeLikeHf(string name, int seed)
    {
        var t = TokenizerFixtures.Get(name);
        var random = new RandomText(seed);
        for (int i = 0; i < RandomCount / 3; i++)
        {
            string text = random.Text();
            if (name == "llama2-added-tokens") text = text.Replace("<think>", "<tool>").Replace("<|im_start|>", "[INST]").Replace("<|im_end|>", " [/INST] ");
            var ours = t.Ours.Encode(text);
            AssertSameIds(t.Hf.Encode(text), ours, text, name);
            Assert.Equal(t.Hf.Decode(ours.Select(id => (uint)id).ToArray()), t.Ours.Decode(ours, skipSpecialTokens: true));
        }
    }

    [Theory]
    [InlineData("gpt2-shape", 3)]
    [InlineData("gpt2-prefix-space", 4)]
    [InlineData("split-prefix-space", 6)]
    [InlineData("added-token-flags", 8)]
    [InlineData("llama3-template-bos", 5)]
    public void OtherSupportedShapesEncodeLikeHf(string name, int seed)
    {
        var t = TokenizerFixtures.Get(name);
        var random = new RandomText(seed);
        for (int i = 0; i < RandomCount / 3; i++)
        {
            string text = random.Text();
            AssertSameIds(t.Hf.Encode(text), t.Ours.Encode(text), text, name);
        }
    }

    [Theory]
    [MemberData(nameof(AllShapes))]
    public void SpecialTokensInTextAreMatchedAsSuch(string name)
    {
        var t = TokenizerFixtures.Get(name);
        string[] texts =
        [
            "<|begin_of_text|>hi<|eot_id|>", "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n",
            "a<|eot_id|><|eot_id|>b", "<|begin_of_text|", "<think>\nsome reasoning\n</think>\n\nanswer", " <|eot_id|> x ",
            "<|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>", "<|<|im_end|>|>", "<tool_call>{}</tool_call>",
            "", " ", "\n", "x", "<|endoftext|><|endoftext|>", "<|reserved_special_token_250|>!", "   <|im_end|>   ",
            "a <think> b", "a\n\n<think>b", "a </think>  \n b", "x<tool_call>y", "x <tool_call> y", "é<tool_call>", "<tool_call>_",
            "<|fim_pad|>x<|fim_pad|>", " \t<|im_end|>\n\n<|im_end|>", "<think></think>", "日本<tool_call>語",
            "<s>[INST] hi [/INST]</s>", "<s> x</s> <s>  y", "[INST]<tool> a <tool>b[/INST]", "  [/INST]  z", "<unk>?", "</s>",
            "<|startoftext|>Hi<|endoftext|>", "x<s>", "▁<s>▁",
        ];
        foreach (string text in texts)
        {
            var hf = t.Hf.Encode(text);
            AssertSameIds(hf, t.Ours.Encode(text, addSpecialTokens: true), text, name);
            bool addsBos = name is "llama3-template-bos" or "llama3_1" || name.StartsWith("llama2", StringComparison.Ordinal);
            var withoutPost = addsBos ? hf.Skip(1).ToArray() : hf;
            AssertSameIds(withoutPost, t.Ours.Encode(text, addSpecialTokens: false), text, name + " without special tokens");
        }
    }

    [Theory]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    [InlineData("llama2")]
    [InlineData("yi")]
    public void LongPiecesEncodeLikeHf(string name)
    {
        // Long pre-tokens take the heap path of the BPE merge; short ones the array path.
        var t = TokenizerFixtures.Get(name);
        var random = new Random(3);
        string RandomLetters(int n) => new(Enumerable.Range(0, n).Select(_ => (char)('a' + random.Next(26))).ToArray());
        string[] texts =
        [
            new string('x', 1000), RandomLetters(300), " " + RandomLetters(49), RandomLetters(47), new string('=', 300),
            new string(' ', 1000) + "x", string.Concat(Enumerable.Repeat("🙂", 100)), string.Concat(Enumerable.Repeat("ab", 200)),
            "!@#$%^&*()_+-=[]{};':\",.<>/?`~" + RandomLetters(100), string.Concat(Enumerable.Repeat("日本語", 50)),
            string.Concat(Enumerable.Range(0, 40).Select(_ => RandomLetters(1 + random.Next(60)))),
        ];
        foreach (string text in texts) AssertSameIds(t.Hf.Encode(text), t.Ours.Encode(text), text, name);
    }

    [Fact]
    public void TemplateProcessingAddsBosOnlyWithSpecialTokens()
    {
        var t = TokenizerFixtures.Llama31Bos;
        var plain = t.Ours.Encode("hi", addSpecialTokens: false);
        Assert.Equal(TokenizerFixtures.Llama3.Ours.Encode("hi"), plain);
        Assert.Equal([128000, .. plain], t.Ours.Encode("hi"));
        Assert.Equal([128000], t.Ours.Encode(""));
        Assert.Equal([128000], t.Hf.Encode("").Select(x => (int)x));
    }

    [Theory]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    [InlineData("llama2")]
    [InlineData("yi")]
    [InlineData("llama2-metaspace-split")]
    public void RandomIdSequencesDecodeLikeHf(string name)
    {
        // Random ids split characters across tokens and produce invalid UTF-8: U+FFFD placement must match.
        var t = TokenizerFixtures.Get(name);
        var random = new Random(7);
        // SentencePiece vocabularies: half the draws from the <0xNN> byte tokens, so that runs of them (valid and
        // invalid UTF-8) are common.
        int? firstByte = t.Ours.TokenToId("<0x00>");
        int Draw() => firstByte is int b && random.Next(2) == 0 ? b + random.Next(256) : random.Next(t.Ours.VocabSize);
        for (int i = 0; i < 2000; i++)
        {
            var ids = Enumerable.Range(0, 1 + random.Next(12)).Select(_ => Draw()).ToArray();
            Assert.Equal(t.Hf.Decode(ids.Select(id => (uint)id).ToArray()), t.Ours.Decode(ids, skipSpecialTokens: true));
        }
    }

    [Fact]
    public void ConcurrentEncodesAgreeWithSequentialOnes()
    {
        // One tokenizer serves many requests; its word cache is shared.
        var t = TokenizerFixtures.Qwen3;
        var random = new RandomText(21);
        var texts = Enumerable.Range(0, 400).Select(_ => random.Text()).ToArray();
        var expected = texts.Select(text => t.Hf.Encode(text).Select(x => (int)x).ToArray()).ToArray();
        var fresh = HfTokenizer.Load(t.JsonPath, t.ConfigPath);
        Parallel.For(0, texts.Length * 4, new ParallelOptions { MaxDegreeOfParallelism = 4 },
            i => Assert.Equal(expected[i % texts.Length], fresh.Encode(texts[i % texts.Length])));
    }

    internal static void AssertSameIds(uint[] hf, IReadOnlyList<int> ours, string text, string name)
    {
        if (hf.Length == ours.Count && hf.Select(x => (int)x).SequenceEqual(ours)) return;
        Assert.Fail($"{name}: encoding of {Escape(text)} differs\n  hf:   [{string.Join(", ", hf)}]\n  ours: [{string.Join(", ", ours)}]");
    }

    internal static string Escape(string s) =>
        "\"" + string.Concat(s.Select(c => c switch
        {
            '\n' => "\\n", '\r' => "\\r", '\t' => "\\t", '"' => "\\\"",
            _ when c < ' ' || c > '~' => $"\\u{(int)c:X4}",
            _ => c.ToString(),
        })) + "\"";
}
