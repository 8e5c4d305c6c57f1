using System.Buffers;
using System.Text;

namespace Apb.Tokenization;

/// <summary>
/// Turns generated ids into text as they arrive. A character split over several tokens (byte-level pieces of an emoji,
/// or SentencePiece's &lt;0xNN&gt; byte-fallback tokens) is held back until its last byte arrives, so no half character
/// or premature U+FFFD is ever emitted; bytes that can never become valid come out as U+FFFD right away. The
/// concatenation of everything returned equals <see cref="HfTokenizer.Decode"/> of all ids, with one exception: where a
/// run of &lt;0xNN&gt; tokens is invalid UTF-8, HF's decode turns every byte of the run into U+FFFD, valid characters
/// in it included, while the stream has already emitted those characters. Not thread-safe (one per stream).
/// </summary>
public sealed class StreamingDecoder
{
    private readonly DecodeTable _table;
    private readonly bool _skipSpecialTokens;
    private readonly List<byte> _pending = new(8);
    private bool _first = true;
    private int _stripLeft; // leading strip characters (SentencePiece's Strip decoder) still to remove

    public StreamingDecoder(HfTokenizer tokenizer, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _table = tokenizer.Decoding;
        _skipSpecialTokens = skipSpecialTokens;
        _stripLeft = _table.Decoder.StripStart;
    }

    /// <summary>The text that became complete with <paramref name="id"/>; often "" mid-character.</summary>
    public string Push(int id)
    {
        if (!_table.Decodes(id, _skipSpecialTokens)) return "";
        bool first = _first;
        _first = false;
        if (_table.Decoder.IsByteLevel) return Strip(PushBytes(_table.Bytes(id), perByteReplacement: false));
        if (_table.FallbackByte(id) >= 0) return Strip(PushBytes(_table.Bytes(id), perByteReplacement: true));
        // A whole token: whatever byte run is pending has ended.
        string text = first ? _table.FirstTokenText(id) : Encoding.UTF8.GetString(_table.Bytes(id));
        return Strip(_pending.Count == 0 ? text : Flush(perByteReplacement: true) + text);
    }

    /// <summary>Whatever is still held back (an unfinished character comes out as U+FFFD); resets the decoder.</summary>
    public string Flush()
    {
        string text = Strip(Flush(perByteReplacement: !_table.Decoder.IsByteLevel));
        _first = true;
        _stripLeft = _table.Decoder.StripStart;
        return text;
    }

    private string Flush(bool perByteReplacement)
    {
        if (_pending.Count == 0) return "";
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending);
        // Byte-level: an unfinished character is one U+FFFD, as UTF-8 decoding gives it; ByteFallback: one per byte.
        string text = Decode(span, perByteReplacement);
        _pending.Clear();
        return text;
    }

    private string PushBytes(ReadOnlySpan<byte> bytes, bool perByteReplacement)
    {
        if (_pending.Count == 0 && Ascii.IsValid(bytes)) return Encoding.ASCII.GetString(bytes);
        foreach (byte b in bytes) _pending.Add(b);
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending);
        int complete = Complete(span);
        if (complete == 0) return "";
        string text = Decode(span[..complete], perByteReplacement);
        _pending.RemoveRange(0, complete);
        return text;
    }

    private string Strip(string text)
    {
        if (_stripLeft == 0 || text.Length == 0) return text;
        int n = 0;
        while (n < _stripLeft && n < text.Length && text[n] == _table.Decoder.StripContent) n++;
        // Only the start of the whole text is stripped: once anything is emitted, stripping is over.
        _stripLeft = n < text.Length ? 0 : _stripLeft - n;
        return text[n..];
    }

    // Everything except a trailing sequence that is a valid start of a character still missing bytes.
    private static int Complete(ReadOnlySpan<byte> bytes)
    {
        int i = 0;
        while (i < bytes.Length)
        {
            var status = Rune.DecodeFromUtf8(bytes[i..], out _, out int consumed);
            if (status == OperationStatus.NeedMoreData) return i;
            i += consumed;
        }
        return i;
    }

    private static string Decode(ReadOnlySpan<byte> bytes, bool perByteReplacement)
    {
        if (!perByteReplacement) return Encoding.UTF8.GetString(bytes);
        var sb = new StringBuilder(bytes.Length);
        int i = 0;
        while (i < bytes.Length)
        {
            var status = Rune.DecodeFromUtf8(bytes[i..], out var rune, out int consumed);
            if (status == OperationStatus.Done) sb.Append(rune.ToString());
            else sb.Append('\uFFFD', status == OperationStatus.InvalidData ? consumed : bytes.Length - i);
            i += status == OperationStatus.NeedMoreData ? bytes.Length - i : consumed;
        }
        return sb.ToString();
    }
}
