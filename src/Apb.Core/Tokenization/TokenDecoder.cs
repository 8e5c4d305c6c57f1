namespace Apb.Tokenization;

/// <summary>
/// tokenizer.json's "decoder", for the two families: <see cref="IsByteLevel"/> (GPT-2's byte alphabet mapped back to
/// bytes, the whole output read as UTF-8 with U+FFFD for invalid sequences), or SentencePiece's chain: per token the
/// literal <see cref="Replacements"/> ("▁" → " ") or Metaspace's, then ByteFallback (a run of &lt;0xNN&gt; tokens is
/// read as UTF-8; an invalid run becomes one U+FFFD per byte), Fuse, and Strip (up to <see cref="StripStart"/>
/// leading <see cref="StripContent"/> characters off the whole text).
/// </summary>
internal sealed record TokenDecoder
{
    public static readonly TokenDecoder ByteLevelDecoder = new() { IsByteLevel = true };

    public bool IsByteLevel { get; init; }
    public IReadOnlyList<(string From, string To)> Replacements { get; init; } = [];
    /// <summary>Metaspace's decoder: its replacement becomes a space, except in the first token when it prepends.</summary>
    public char? MetaspaceReplacement { get; init; }
    public bool MetaspaceDropsInFirstToken { get; init; }
    public bool ByteFallback { get; init; }
    public char StripContent { get; init; } = ' ';
    public int StripStart { get; init; }

    /// <summary>What the per-token steps make of <paramref name="token"/> (SentencePiece chain only).</summary>
    public string TokenText(string token, bool first)
    {
        foreach (var (from, to) in Replacements) token = token.Replace(from, to, StringComparison.Ordinal);
        if (MetaspaceReplacement is char r && token.Contains(r))
            token = first && MetaspaceDropsInFirstToken ? token.Replace(r.ToString(), "") : token.Replace(r, ' ');
        return token;
    }

    /// <summary>The byte a ByteFallback token stands for, or -1 (HF: six characters "&lt;0x" hex hex "&gt;", parsed as Rust's u8::from_str_radix).</summary>
    public int FallbackByte(string text)
    {
        if (!ByteFallback || text.Length != 6 || !text.StartsWith("<0x", StringComparison.Ordinal) || text[5] != '>') return -1;
        // from_str_radix accepts a leading '+' before a single digit.
        string digits = text[3] == '+' ? text[4..5] : text[3..5];
        return byte.TryParse(digits, System.Globalization.NumberStyles.AllowHexSpecifier, null, out byte b) ? b : -1;
    }

    public override string ToString()
    {
        if (IsByteLevel) return "ByteLevel";
        var steps = Replacements.Select(r => $"Replace({r.From}→{r.To})").ToList();
        if (MetaspaceReplacement is char m) steps.Add($"Metaspace({m})");
        if (ByteFallback) steps.Add("ByteFallback");
        if (StripStart > 0) steps.Add($"Strip({StripStart})");
        return string.Join(" + ", steps);
    }
}
