namespace Apb.Tests.Tokenization;

/// <summary>
/// Real sentences in many scripts, with the cases SentencePiece and byte-level BPE treat differently: characters
/// outside a 32K vocabulary (byte fallback), emoji and ZWJ sequences, combining marks, right-to-left text, digits,
/// runs of spaces, tabs and newlines, leading and trailing whitespace, and special-token text.
/// </summary>
public static class MultilingualText
{
    public static readonly string[] Sentences =
    [
        "The quick brown fox jumps over the lazy dog.",
        "  Leading spaces, trailing spaces.   ",
        "Tabs\tand\t\ttabs, new\nlines\n\n\nand\r\nwindows line ends.",
        "Numbers: 3.14159, 2,718,281,828 and 1234567890; dates 2024-07-23, 12:34:56.",
        "日本語の文章を正しくトークン化できますか？東京は日本の首都です。",
        "中文分词测试：我爱自然语言处理。今天天气很好，我们去公园散步吧！",
        "한국어 문장도 잘 처리되어야 합니다. 서울은 한국의 수도입니다.",
        "العربية تكتب من اليمين إلى اليسار. مرحبا بالعالم! ١٢٣٤٥",
        "עברית גם כן נכתבת מימין לשמאל: שלום עולם.",
        "Русский текст: съешь же ещё этих мягких французских булок, да выпей чаю.",
        "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
        "हिन्दी में लिखा गया वाक्य: नमस्ते दुनिया।",
        "ภาษาไทยไม่มีช่องว่างระหว่างคำ สวัสดีชาวโลก",
        "Emoji: 😀🎉👍🏽 👩‍💻 🧑‍🤝‍🧑 🇯🇵🇺🇸 ❤️ 🤖🚀",
        "Combining marks: e\u0301 a\u0308 n\u0303 o\u0302\u0323 and precomposed é ä ñ ộ; Zalgo: Z\u0351\u0352a\u0353l\u0354g\u0355o\u0356",
        "Rare CJK: 𠀀𠀁𠀂 𪚥 鱻 龘 齉, math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐀𝐁𝐂 𝟎𝟏𝟐.",
        "Mixed: naïve café résumé Straße ﬁne ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ Ⅻ ½ ²",
        "Code: def f(x):\n    return {'a': [1, 2, 3]}  # comment\n\tprint(\"hi\")",
        "Special-looking text: <s> </s> <unk> <|im_start|> [INST] <<SYS>> <0x0A> ▁ ▁▁x",
        "Word    with     many      spaces and a space before punctuation .",
        "\n\nStarts with newlines and ends with them\n\n",
        " ",
        "",
        "a",
        "Ünïcödé ÜBER ALLES — “quotes” ‘single’ «guillemets» …ellipsis",
        "Vietnamese: Tiếng Việt có rất nhiều dấu thanh điệu như ầ ẩ ẫ ậ.",
        "Private use and symbols: \uE000\uF8FF ☃ ♞ ∑∫√ ≠ ≤ ≥ → ⇒ ∞",
        "URL https://example.com/path?query=1&x=y#frag and email someone@example.org",
        "Sanskrit: क्षत्रिय, Tamil: தமிழ் மொழி, Georgian: ქართული ენა, Armenian: Հայերեն",
        "Zero width: a\u200Bb\u200Cc\u200Dd\uFEFFe and soft\u00ADhyphen",
    ];
}
