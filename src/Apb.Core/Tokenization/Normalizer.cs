namespace Apb.Tokenization;

/// <summary>
/// tokenizer.json's "normalizer": the steps HF applies, in order, to each stretch of text between added tokens (and to
/// the content of added tokens marked normalized). The ones the supported families use: NFC (Qwen), and SentencePiece's
/// legacy pair Prepend("▁") + Replace(" " → "▁") (Llama-2, Mistral, Yi without the prepend).
/// </summary>
internal sealed class Normalizer
{
    public abstract record Step
    {
        public abstract string Apply(string text);
    }

    public sealed record NfcStep : Step
    {
        public override string Apply(string text) => Nfc.Normalize(text);
        public override string ToString() => "NFC";
    }

    /// <summary>HF prepends to non-empty text only.</summary>
    public sealed record PrependStep(string Prefix) : Step
    {
        public override string Apply(string text) => text.Length == 0 ? text : Prefix + text;
        public override string ToString() => $"Prepend({Prefix})";
    }

    /// <summary>Every non-overlapping occurrence of a literal, left to right.</summary>
    public sealed record ReplaceStep(string Pattern, string Content) : Step
    {
        public override string Apply(string text) => text.Replace(Pattern, Content, StringComparison.Ordinal);
        public override string ToString() => $"Replace({Pattern}→{Content})";
    }

    public static readonly Normalizer None = new([]);

    private readonly Step[] _steps;

    public Normalizer(IReadOnlyList<Step> steps) => _steps = steps.ToArray();

    public bool IsNone => _steps.Length == 0;

    public bool HasNfc => _steps.Any(s => s is NfcStep);

    public string Normalize(string text)
    {
        foreach (var step in _steps) text = step.Apply(text);
        return text;
    }

    public override string ToString() => string.Join(" + ", _steps.Select(s => s.ToString()));
}
