namespace Apb.Tokenization;

/// <summary>When Metaspace puts its replacement character in front of a stretch of text.</summary>
internal enum PrependScheme
{
    /// <summary>Every stretch between added tokens.</summary>
    Always,
    /// <summary>Only the stretch at the very start of the text (non-legacy Llama/Mistral: no "▁" after a special token).</summary>
    First,
    Never,
}

/// <summary>
/// SentencePiece's word boundary as HF's Metaspace pre-tokenizer writes it: spaces become <see cref="Replacement"/>
/// ("▁"), which is prepended to the stretch per the <see cref="PrependScheme"/> unless it already starts with one; with
/// <c>split</c>, a new piece starts at every "▁" (HF's MergedWithNext: each "▁" leads the text after it, so a run of
/// spaces is one piece per space).
/// </summary>
internal sealed class MetaspacePreTokenizer(char replacement, PrependScheme scheme, bool split) : PreTokenizer
{
    public char Replacement => replacement;

    public override void Split(string segment, bool atTextStart, List<Piece> pieces, int maxPieces = int.MaxValue)
    {
        pieces.Clear();
        if (segment.Length == 0) return;
        string text = segment.Replace(' ', replacement);
        bool prepend = scheme == PrependScheme.Always || (scheme == PrependScheme.First && atTextStart);
        if (prepend && text[0] != replacement) text = replacement + text;
        if (!split)
        {
            pieces.Add(new Piece(text, 0, text.Length));
            return;
        }
        int start = 0;
        for (int i = 1; i < text.Length; i++)
            if (text[i] == replacement)
            {
                if (pieces.Count > maxPieces) return;
                pieces.Add(new Piece(text, start, i - start));
                start = i;
            }
        pieces.Add(new Piece(text, start, text.Length - start));
    }

    public override string ToString() =>
        $"Metaspace({replacement}, prepend {scheme.ToString().ToLowerInvariant()}{(split ? ", split" : "")})";
}
