namespace Apb.Tokenization;

/// <summary>A pre-token: <see cref="Length"/> characters of <see cref="Text"/> from <see cref="Start"/>.</summary>
internal readonly record struct Piece(string Text, int Start, int Length)
{
    public ReadOnlySpan<char> Span => Text.AsSpan(Start, Length);
}

/// <summary>
/// tokenizer.json's "pre_tokenizer": cuts a normalized stretch of text (between added tokens) into the pieces the BPE
/// model merges within. <see cref="None"/> (no pre-tokenizer, legacy SentencePiece files) keeps the stretch whole.
/// </summary>
internal abstract class PreTokenizer
{
    public static readonly PreTokenizer None = new WholeSegment();

    /// <summary>
    /// Replaces the content of <paramref name="pieces"/> with the pieces of <paramref name="segment"/>, in order.
    /// <paramref name="atTextStart"/>: the segment begins at offset 0 of the encoded text (Metaspace's "first" scheme).
    /// May stop with the pieces of a prefix of the segment once there are more than <paramref name="maxPieces"/>.
    /// </summary>
    public abstract void Split(string segment, bool atTextStart, List<Piece> pieces, int maxPieces = int.MaxValue);

    private sealed class WholeSegment : PreTokenizer
    {
        public override void Split(string segment, bool atTextStart, List<Piece> pieces, int maxPieces = int.MaxValue)
        {
            pieces.Clear();
            if (segment.Length > 0) pieces.Add(new Piece(segment, 0, segment.Length));
        }
    }
}
