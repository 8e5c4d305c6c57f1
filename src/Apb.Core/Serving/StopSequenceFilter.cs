using System.Text;

namespace Apb.Serving;

/// <summary>
/// Cuts streamed text at the first stop sequence (OpenAI's "stop"): the match and everything after it are never
/// emitted. A stop string can arrive split over several tokens, so text that could still be the start of one is held
/// back until the next piece decides it; <see cref="Flush"/> releases it at the end. Not thread-safe (one per stream).
/// </summary>
public sealed class StopSequenceFilter
{
    readonly string[] _stops;
    readonly StringBuilder _held = new();

    public StopSequenceFilter(IReadOnlyList<string> stops) => _stops = stops.Where(s => s.Length > 0).ToArray();

    /// <summary>True once a stop sequence was seen; the caller should end generation.</summary>
    public bool Stopped { get; private set; }

    /// <summary>The text that is now certain to be output; "" while a possible stop prefix is held back.</summary>
    public string Push(string piece)
    {
        if (Stopped) return "";
        if (_stops.Length == 0) return piece;
        _held.Append(piece);
        string held = _held.ToString();
        int cut = -1;
        foreach (var s in _stops)
        {
            int at = held.IndexOf(s, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            Stopped = true;
            _held.Clear();
            return held[..cut];
        }
        int keep = LongestStopPrefixSuffix(held);
        _held.Clear().Append(held, held.Length - keep, keep);
        return held[..^keep];
    }

    /// <summary>Whatever is still held back (it never became a stop sequence).</summary>
    public string Flush()
    {
        if (Stopped) return "";
        string rest = _held.ToString();
        _held.Clear();
        return rest;
    }

    // The longest tail of text that is a proper prefix of some stop string: it may still grow into a match.
    int LongestStopPrefixSuffix(string text)
    {
        int best = 0;
        foreach (var s in _stops)
            for (int n = Math.Min(s.Length - 1, text.Length); n > best; n--)
                if (string.CompareOrdinal(text, text.Length - n, s, 0, n) == 0) { best = n; break; }
        return best;
    }
}
