using System.Text;

namespace Apb.Tokenization;

/// <summary>
/// Every token's decoded bytes, back to back (token i is [offsets[i], offsets[i+1])), as the <see cref="TokenDecoder"/>
/// makes them: byte-level tokens mapped back to bytes; SentencePiece tokens after their replacements, a ByteFallback
/// token as its one byte. <see cref="Decode"/> is HF's decode; <see cref="StreamingDecoder"/> reads the same table.
/// </summary>
internal sealed class DecodeTable
{
    private readonly string?[] _idToToken;
    private readonly bool[] _special;
    private readonly byte[] _bytes;
    private readonly int[] _offsets;
    private readonly short[] _fallbackByte; // -1: not a ByteFallback token

    public DecodeTable(TokenDecoder decoder, string?[] idToToken, bool[] special)
    {
        Decoder = decoder;
        _idToToken = idToToken;
        _special = special;
        int size = idToToken.Length;
        _offsets = new int[size + 1];
        _fallbackByte = new short[size];
        var bytes = new List<byte>(size * 8);
        for (int id = 0; id < size; id++)
        {
            _offsets[id] = bytes.Count;
            _fallbackByte[id] = -1;
            if (idToToken[id] is not { } token) continue;
            if (decoder.IsByteLevel)
            {
                bytes.AddRange(ByteLevel.DecodeToken(token));
                continue;
            }
            string text = decoder.TokenText(token, first: false);
            int b = decoder.FallbackByte(text);
            _fallbackByte[id] = (short)b;
            if (b >= 0) bytes.Add((byte)b);
            else bytes.AddRange(Encoding.UTF8.GetBytes(text));
        }
        _offsets[size] = bytes.Count;
        _bytes = bytes.ToArray();
    }

    public TokenDecoder Decoder { get; }

    public int Size => _idToToken.Length;

    public bool Decodes(int id, bool skipSpecialTokens) =>
        (uint)id < (uint)Size && _idToToken[id] is not null && !(skipSpecialTokens && _special[id]);

    public ReadOnlySpan<byte> Bytes(int id) => _bytes.AsSpan(_offsets[id], _offsets[id + 1] - _offsets[id]);

    /// <summary>The byte of a ByteFallback token, or -1.</summary>
    public int FallbackByte(int id) => _fallbackByte[id];

    /// <summary>The first decoded token's text: differs from <see cref="Bytes"/> only under Metaspace's decoder.</summary>
    public string FirstTokenText(int id) =>
        _fallbackByte[id] >= 0 || Decoder.MetaspaceReplacement is null
            ? Encoding.UTF8.GetString(Bytes(id))
            : Decoder.TokenText(_idToToken[id]!, first: true);

    public string Decode(IReadOnlyList<int> ids, bool skipSpecialTokens)
    {
        if (Decoder.IsByteLevel)
        {
            // HF's ByteLevel decoder: all tokens' bytes, then one lossy UTF-8 read.
            int total = 0;
            foreach (int id in ids)
                if (Decodes(id, skipSpecialTokens)) total += _offsets[id + 1] - _offsets[id];
            var buffer = new byte[total];
            int at = 0;
            foreach (int id in ids)
            {
                if (!Decodes(id, skipSpecialTokens)) continue;
                Bytes(id).CopyTo(buffer.AsSpan(at));
                at += _offsets[id + 1] - _offsets[id];
            }
            return Encoding.UTF8.GetString(buffer);
        }

        var sb = new StringBuilder();
        var run = new List<byte>();
        bool first = true;
        foreach (int id in ids)
        {
            if (!Decodes(id, skipSpecialTokens)) continue;
            if (_fallbackByte[id] >= 0) run.Add((byte)_fallbackByte[id]);
            else
            {
                AppendRun(sb, run);
                sb.Append(first ? FirstTokenText(id) : Encoding.UTF8.GetString(Bytes(id)));
            }
            first = false;
        }
        AppendRun(sb, run);
        return StripStart(sb.ToString(), Decoder.StripStart);
    }

    // HF's ByteFallback: a run of byte tokens is one UTF-8 string when valid, else one U+FFFD per byte.
    private static void AppendRun(StringBuilder sb, List<byte> run)
    {
        if (run.Count == 0) return;
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(run);
        if (System.Text.Unicode.Utf8.IsValid(span)) sb.Append(Encoding.UTF8.GetString(span));
        else sb.Append('\uFFFD', run.Count);
        run.Clear();
    }

    /// <summary>Up to <paramref name="count"/> leading strip characters removed (HF's Strip decoder after Fuse).</summary>
    internal string StripStart(string text, int count)
    {
        int n = 0;
        while (n < count && n < text.Length && text[n] == Decoder.StripContent) n++;
        return n == 0 ? text : text[n..];
    }
}
