namespace Apb.Tokenization;

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
