using System.Text.RegularExpressions;

namespace Apb.Tokenization;

/// <summary>A pre-token: <see cref="Length"/> characters of <see cref="Text"/> from <see cref="Start"/>.</summary>
internal readonly record struct Piece(string Text, int Start, int Length)
{
    public ReadOnlySpan<char> Span => Text.AsSpan(Start, Length);
}

/// <summary>
/// Splits normalized text into the pieces BPE runs on, in HF's order: the <c>Split(Regex, Isolated)</c> steps (matches
/// and the gaps between them both become pieces), then ByteLevel: its optional prefix space on every piece so far, and
/// its own GPT-2 regex when <c>use_regex</c>. The byte-level mapping itself happens in <see cref="BytePairModel"/>.
/// </summary>
internal sealed class PreTokenizer
{
    private readonly Regex[] _splits;
    private readonly bool _addPrefixSpace;
    private readonly Regex? _byteLevelRegex;

    public PreTokenizer(Regex[] splits, bool addPrefixSpace, Regex? byteLevelRegex)
    {
        _splits = splits;
        _addPrefixSpace = addPrefixSpace;
        _byteLevelRegex = byteLevelRegex;
    }

    /// <summary>
    /// Replaces the content of <paramref name="pieces"/> with the pieces of <paramref name="segment"/>, in order; stops
    /// with the pieces of a prefix of the segment once there are more than <paramref name="maxPieces"/> (later steps
    /// only split pieces further, so the whole segment has more too).
    /// </summary>
    public void Split(string segment, List<Piece> pieces, int maxPieces = int.MaxValue)
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

/// <summary>
/// .NET regexes see UTF-16 code units, HF's (Oniguruma) see code points: an emoji or a CJK Extension-B letter is two
/// surrogates of category Cs to .NET, one So/Lo character to HF, so "😀abc" would split differently. The view
/// replaces each surrogate pair by one BMP stand-in of the same general category (never whitespace, never ASCII, no
/// case folding to ASCII), so any pattern built from \p{..}, \s and ASCII literals matches exactly where HF's does,
/// and maps the match positions back.
/// </summary>
internal readonly struct SurrogateFreeView
{
    private static readonly char[] s_standIns = BuildStandIns();

    public readonly string Text;
    private readonly int[]? _viewToOriginal; // length = view length + 1; null when the text has no surrogates
    private readonly int[]? _originalToView;

    private SurrogateFreeView(string text, int[]? viewToOriginal, int[]? originalToView)
    {
        Text = text;
        _viewToOriginal = viewToOriginal;
        _originalToView = originalToView;
    }

    public static SurrogateFreeView Create(string text)
    {
        int first = text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF');
        if (first < 0) return new SurrogateFreeView(text, null, null);

        var chars = new char[text.Length];
        var viewToOriginal = new int[text.Length + 1];
        var originalToView = new int[text.Length + 1];
        int v = 0;
        for (int i = 0; i < text.Length; i++)
        {
            originalToView[i] = v;
            viewToOriginal[v] = i;
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                var category = CharUnicodeInfoCategory(char.ConvertToUtf32(c, text[i + 1]));
                chars[v++] = s_standIns[(int)category];
                originalToView[++i] = v; // a position inside a pair is never a boundary; map it past the pair
            }
            else chars[v++] = c;
        }
        originalToView[text.Length] = v;
        viewToOriginal[v] = text.Length;
        return new SurrogateFreeView(new string(chars, 0, v), viewToOriginal, originalToView);
    }

    private static System.Globalization.UnicodeCategory CharUnicodeInfoCategory(int cp) =>
        System.Globalization.CharUnicodeInfo.GetUnicodeCategory(cp);

    public int ToView(int original) => _originalToView is null ? original : _originalToView[original];

    public Piece ToOriginal(string original, int viewStart, int viewEnd)
    {
        if (_viewToOriginal is null) return new Piece(original, viewStart, viewEnd - viewStart);
        int start = _viewToOriginal[viewStart];
        return new Piece(original, start, _viewToOriginal[viewEnd] - start);
    }

    private static char[] BuildStandIns()
    {
        var standIns = new char[32];
        for (int c = 0x100; c < 0x10000; c++)
        {
            char ch = (char)c;
            if (char.IsSurrogate(ch) || char.IsWhiteSpace(ch)) continue;
            // Characters that fold to ASCII under (?i) (long s, Kelvin sign, dotted/dotless i, Angstrom sign).
            if (c is 0x17F or 0x212A or 0x212B or 0x130 or 0x131) continue;
            int category = (int)char.GetUnicodeCategory(ch);
            if (standIns[category] == '\0') standIns[category] = ch;
        }
        // Every category an astral code point can have exists in the BMP; Cs cannot occur here.
        return standIns;
    }
}
