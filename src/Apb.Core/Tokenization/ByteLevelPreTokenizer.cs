using System.Text.RegularExpressions;

namespace Apb.Tokenization;

/// <summary>
/// Splits normalized text into the pieces BPE runs on, in HF's order: the <c>Split(Regex, Isolated)</c> steps (matches
/// and the gaps between them both become pieces), then ByteLevel: its optional prefix space on every piece so far, and
/// its own GPT-2 regex when <c>use_regex</c>. The byte-level mapping itself happens in <see cref="BytePairModel"/>.
/// </summary>
internal sealed class ByteLevelPreTokenizer : PreTokenizer
{
    private readonly Regex[] _splits;
    private readonly bool _addPrefixSpace;
    private readonly Regex? _byteLevelRegex;

    public ByteLevelPreTokenizer(Regex[] splits, bool addPrefixSpace, Regex? byteLevelRegex)
    {
        _splits = splits;
        _addPrefixSpace = addPrefixSpace;
        _byteLevelRegex = byteLevelRegex;
    }

    public override void Split(string segment, bool atTextStart, List<Piece> pieces, int maxPieces = int.MaxValue)
    {
        pieces.Clear();
        if (segment.Length == 0) return; // HF drops empty splits before any step sees them
        pieces.Add(new Piece(segment, 0, segment.Length));
        foreach (var regex in _splits) SplitAll(regex, pieces, maxPieces);
        if (_addPrefixSpace)
        {
            for (int i = 0; i < pieces.Count; i++)
                if (pieces[i].Span[0] != ' ')
                {
                    string spaced = " " + pieces[i].Span.ToString();
                    pieces[i] = new Piece(spaced, 0, spaced.Length);
                }
        }
        if (_byteLevelRegex is not null) SplitAll(_byteLevelRegex, pieces, maxPieces);
    }

    // Later steps only split pieces further: once a step has more than maxPieces, the whole segment has too.
    private static void SplitAll(Regex regex, List<Piece> pieces, int maxPieces)
    {
        var current = pieces.ToArray();
        pieces.Clear();
        string? viewOf = null;
        SurrogateFreeView view = default;
        foreach (var piece in current)
        {
            if (!ReferenceEquals(viewOf, piece.Text)) (viewOf, view) = (piece.Text, SurrogateFreeView.Create(piece.Text));
            // The regex runs over the piece alone (lookarounds see its ends, as in HF) in the surrogate-free view.
            int vStart = view.ToView(piece.Start), vEnd = view.ToView(piece.Start + piece.Length);
            int previous = vStart;
            foreach (var m in regex.EnumerateMatches(view.Text.AsSpan(vStart, vEnd - vStart)))
            {
                if (pieces.Count > maxPieces) return;
                if (m.Length == 0) continue;
                int mStart = vStart + m.Index, mEnd = mStart + m.Length;
                if (mStart > previous) pieces.Add(view.ToOriginal(piece.Text, previous, mStart));
                pieces.Add(view.ToOriginal(piece.Text, mStart, mEnd));
                previous = mEnd;
            }
            if (previous < vEnd) pieces.Add(view.ToOriginal(piece.Text, previous, vEnd));
        }
    }
}

