using System.Text;
using Xunit;

namespace Apb.Tests.Tokenization;

/// <summary>
/// Seeded random strings built from the fragments that stress a byte-level BPE pre-tokenizer: word runs, digit runs,
/// punctuation, whitespace runs, contractions (incl. the case-folding corner "'ſ"), CJK, emoji (incl. ZWJ sequences),
/// astral letters and digits, precomposed and decomposed accents (NFC), Hangul jamo, code, and special-token text.
/// </summary>
public sealed class RandomText(int seed)
{
    private readonly Random _random = new(seed);

    private static readonly string[] Words =
    [
        "the", "The", "HELLO", "world", "tokenizer", "a", "I", "x", "supercalifragilistic", "naïve", "café", "Straße",
        "über", "Ελληνικά", "привет", "мир", "שלום", "مرحبا", "नमस्ते", "สวัสดี", "日本語", "中文", "한국어", "ｆｕｌｌ",
    ];
    private static readonly string[] Punctuation =
    [
        ".", ",", "!", "?", "...", ";", ":", "-", "--", "—", "(", ")", "[", "]", "{", "}", "\"", "'", "`", "@", "#", "$",
        "%", "^", "&", "*", "_", "+", "=", "<", ">", "/", "\\", "|", "~", "«", "»", "“", "”", "¡", "¿", "•", "€", "£",
    ];
    private static readonly string[] Whitespace =
    [
        " ", " ", "  ", "   ", "\n", "\n\n", "\t", "\r\n", "\n\n  \t", "   \n", " \n ", "\u00A0", "\u3000", "\u2003",
        "\u200B", "\r", "\n\n\n", "\t\t", "\u001C", "\u0085", "\u2028", "\v\f",
    ];
    private static readonly string[] Contractions =
    [
        "don't", "I'M", "we'll", "it's", "IT'S", "they're", "you've", "he'd", "'s", "'S", "'ll", "'ſ", "'ſt", "'\u212A", "'\u0130", "'ﬅ", "O'Neil", "'",
        "rock 'n' roll",
    ];
    private static readonly string[] Code =
    [
        "def f(x):\n    return x**2\n", "if (a < b) { c++; }", "<div class=\"x\">", "x->y", "#include <stdio.h>",
        "for i in range(10):", "    ", "\tint main() {\n\t\treturn 0;\n\t}", "a_b_c = [1, 2, 3]", "// comment",
        "$ ls -la | grep foo", "SELECT * FROM t WHERE id=42;", "https://example.com/a?b=c&d=e", "0x7FFF", "1e-9",
    ];
    private static readonly string[] Emoji =
    [
        "😀", "🎉", "👍", "👍🏽", "👩‍💻", "🇺🇸", "❤️", "🤖", "🚀", "😀😀", "🙂abc", "x🙂", "🧑‍🤝‍🧑",
    ];
    private static readonly string[] Astral = ["𝐀𝐁𝐂", "𠀀", "𝟎𝟏𝟐", "𐐀𐐨", "𝔘𝔫𝔦", "a𝐀b", "1𝟏1"];
    private static readonly string[] Decomposed =
    [
        "e\u0301", "E\u0301", "n\u0303", "a\u0323\u0302", "a\u0302\u0323", "o\u0308\u0304", "\u1100\u1161", "\u1100\u1161\u11A8",
        "A\u030A", "\u212B", "\u0344", "i\u0307", "\u0F73", "c\u0327", "u\u0308", "\u0301", "x\u0301\u0301",
    ];
    private static readonly string[] Specials =
    [
        "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>",
        "<|reserved_special_token_5|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>",
        "<tool_call>", "<|fim_prefix|>", "<|", "|>", "<|eot_id", "<|im_start", "<think", "<<|eot_id|>>",
    ];

    public int Next(int max) => _random.Next(max);

    public string Fragment()
    {
        switch (_random.Next(16))
        {
            case 0: case 1: return Pick(Words);
            case 2: return RandomWord();
            case 3: return RandomDigits();
            case 4: return Pick(Punctuation);
            case 5: case 6: return Pick(Whitespace);
            case 7: return Pick(Contractions);
            case 8: return RandomCodePoints(0x4E00, 0x9FFF, 1 + _random.Next(6));
            case 9: return Pick(Emoji);
            case 10: return Pick(Code);
            case 11: return Pick(Astral);
            case 12: return Pick(Decomposed);
            case 13: return _random.Next(4) == 0 ? Pick(Specials) : Pick(Words);
            case 14: return RandomCodePoints(0xAC00, 0xD7A3, 1 + _random.Next(4)) + RandomCodePoints(0x3041, 0x3096, _random.Next(3));
            default: return RandomCodePoints(0xC0, 0x24F, 1 + _random.Next(5)); // accented Latin
        }
    }

    /// <summary>A string of 1..maxFragments fragments, sometimes separated by single spaces.</summary>
    public string Text(int maxFragments = 24)
    {
        var sb = new StringBuilder();
        int n = 1 + _random.Next(maxFragments);
        bool spaced = _random.Next(2) == 0;
        for (int i = 0; i < n; i++)
        {
            if (spaced && i > 0) sb.Append(' ');
            sb.Append(Fragment());
        }
        return sb.ToString();
    }

    private string Pick(string[] items) => items[_random.Next(items.Length)];

    private string RandomWord()
    {
        var sb = new StringBuilder();
        int n = 1 + _random.Next(12);
        bool upper = _random.Next(4) == 0;
        for (int i = 0; i < n; i++) sb.Append((char)((upper || (i == 0 && _random.Next(3) == 0) ? 'A' : 'a') + _random.Next(26)));
        return sb.ToString();
    }

    private string RandomDigits()
    {
        var sb = new StringBuilder();
        int n = 1 + _random.Next(12);
        for (int i = 0; i < n; i++) sb.Append((char)('0' + _random.Next(10)));
        if (_random.Next(5) == 0) sb.Append("١٢٣"); // Arabic-Indic digits are \p{N} too
        return sb.ToString();
    }

    private string RandomCodePoints(int from, int to, int count)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < count; i++) sb.Append(char.ConvertFromUtf32(from + _random.Next(to - from + 1)));
        return sb.ToString();
    }
}
