using System.Buffers;
using System.Text;

namespace Apb.Tokenization;

/// <summary>
/// Turns generated ids into text as they arrive. A character split over several byte-level tokens (emoji, CJK) is held
/// back until its last byte arrives, so no half character or premature U+FFFD is ever emitted; bytes that can never
/// become valid come out as U+FFFD right away. The concatenation of everything returned equals
/// <see cref="HfTokenizer.Decode"/> of all ids. Not thread-safe (one per stream).
/// </summary>
public sealed class StreamingDecoder
{
    private readonly HfTokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly List<byte> _pending = new(8);

    public StreamingDecoder(HfTokenizer tokenizer, bool skipSpecialTokens = true)
    {
        _tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>The text that became complete with <paramref name="id"/>; often "" mid-character.</summary>
    public string Push(int id)
    {
        if (!_tokenizer.Decodes(id, _skipSpecialTokens)) return "";
        var bytes = _tokenizer.TokenSpan(id);
        if (_pending.Count == 0 && Ascii.IsValid(bytes)) return Encoding.ASCII.GetString(bytes);
        foreach (byte b in bytes) _pending.Add(b);

        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending);
        int complete = CompletePrefixLength(span);
        if (complete == 0) return "";
        string text = Encoding.UTF8.GetString(span[..complete]);
        _pending.RemoveRange(0, complete);
        return text;
    }

    /// <summary>Whatever is still held back (an unfinished character comes out as U+FFFD); resets the decoder.</summary>
    public string Flush()
    {
        if (_pending.Count == 0) return "";
        string text = Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending));
        _pending.Clear();
        return text;
    }

    // Everything except a trailing sequence that is a valid start of a character still missing bytes.
    private static int CompletePrefixLength(ReadOnlySpan<byte> bytes)
    {
        int i = 0;
        while (i < bytes.Length)
        {
            var status = System.Text.Rune.DecodeFromUtf8(bytes[i..], out _, out int consumed);
            if (status == OperationStatus.NeedMoreData) return i;
            i += consumed;
        }
        return i;
    }
}
