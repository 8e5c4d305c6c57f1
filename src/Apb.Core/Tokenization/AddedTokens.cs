using System.Buffers;

namespace Apb.Tokenization;

/// <summary>One entry of tokenizer.json's "added_tokens" (special tokens such as &lt;|eot_id|&gt; and the like).</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool Normalized, bool SingleWord, bool LStrip,
    bool RStrip);

/// <summary>A stretch of text: either plain text to tokenize or an added token found in it.</summary>
internal readonly record struct TextSegment(int Start, int Length, AddedToken? Token);

/// <summary>
/// Finds added tokens in text the way HF's AddedVocabulary does: leftmost-longest matches of the token contents,
/// scanning on after each match; a single_word token touching a word character is skipped (and its text is not
/// rescanned); lstrip/rstrip widen a match over neighbouring whitespace.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private sealed class Node
    {
        public Dictionary<char, Node>? Children;
        public AddedToken? Token;
    }

    private readonly Node _root = new();
    private readonly SearchValues<char> _firstChars;

    public AddedTokenMatcher(IEnumerable<(string Pattern, AddedToken Token)> tokens)
    {
        var first = new HashSet<char>();
        foreach (var (pattern, token) in tokens)
        {
            if (pattern.Length == 0) continue;
            first.Add(pattern[0]);
            var node = _root;
            foreach (char c in pattern)
            {
                node.Children ??= new Dictionary<char, Node>();
                if (!node.Children.TryGetValue(c, out var child)) node.Children[c] = child = new Node();
                node = child;
            }
            node.Token ??= token;
        }
        _firstChars = SearchValues.Create(first.ToArray());
    }

    public void Split(string text, List<TextSegment> output)
    {
        int startOffset = 0, pos = 0;
        while (pos < text.Length)
        {
            var token = FindLongestFrom(text, pos, out int start, out int stop);
            if (token is null) break;
            pos = stop;
            if (token.SingleWord)
            {
                bool spaceBefore = start == 0 || !IsWordChar(text, start - 1, before: true);
                bool spaceAfter = stop == text.Length || !IsWordChar(text, stop, before: false);
                if (!spaceBefore || !spaceAfter) continue;
            }
            if (token.LStrip)
            {
                int s = start;
                while (s > 0 && char.IsWhiteSpace(text[s - 1])) s--;
                start = Math.Max(s, startOffset);
            }
            if (token.RStrip)
                while (stop < text.Length && char.IsWhiteSpace(text[stop])) stop++;
            start = Math.Max(start, startOffset);
            if (startOffset < start) output.Add(new TextSegment(startOffset, start - startOffset, null));
            output.Add(new TextSegment(start, stop - start, token));
            startOffset = stop;
        }
        if (startOffset < text.Length) output.Add(new TextSegment(startOffset, text.Length - startOffset, null));
    }

    // Leftmost position where some token starts, then the longest token there; null when none is left.
    private AddedToken? FindLongestFrom(string text, int from, out int start, out int stop)
    {
        start = stop = 0;
        while (from < text.Length)
        {
            int offset = text.AsSpan(from).IndexOfAny(_firstChars);
            if (offset < 0) return null;
            int i = from + offset;
            Node node = _root;
            AddedToken? best = null;
            int bestEnd = -1;
            for (int j = i; j < text.Length && node.Children is not null && node.Children.TryGetValue(text[j], out var next); j++)
            {
                node = next;
                if (node.Token is not null) { best = node.Token; bestEnd = j + 1; }
            }
            if (best is not null)
            {
                start = i;
                stop = bestEnd;
                return best;
            }
            from = i + 1;
        }
        return null;
    }

    private static bool IsWordChar(string text, int index, bool before)
    {
        int cp = text[index];
        if (before && char.IsLowSurrogate(text[index]) && index > 0 && char.IsHighSurrogate(text[index - 1]))
            cp = char.ConvertToUtf32(text[index - 1], text[index]);
        else if (!before && char.IsHighSurrogate(text[index]) && index + 1 < text.Length && char.IsLowSurrogate(text[index + 1]))
            cp = char.ConvertToUtf32(text[index], text[index + 1]);
        var category = System.Globalization.CharUnicodeInfo.GetUnicodeCategory(cp);
        return category is System.Globalization.UnicodeCategory.UppercaseLetter
            or System.Globalization.UnicodeCategory.LowercaseLetter
            or System.Globalization.UnicodeCategory.TitlecaseLetter
            or System.Globalization.UnicodeCategory.ModifierLetter
            or System.Globalization.UnicodeCategory.OtherLetter
            or System.Globalization.UnicodeCategory.NonSpacingMark
            or System.Globalization.UnicodeCategory.SpacingCombiningMark
            or System.Globalization.UnicodeCategory.EnclosingMark
            or System.Globalization.UnicodeCategory.DecimalDigitNumber
            or System.Globalization.UnicodeCategory.ConnectorPunctuation;
    }
}
