namespace Apb.Tokenization;

/// <summary>
/// GPT-2's byte-to-character alphabet: every byte gets a printable character so a vocabulary of byte strings can be
/// stored as JSON text ("Ġ" is the space byte 0x20, "Ċ" is 0x0A). Printable Latin-1 bytes map to themselves, the
/// other 68 bytes to U+0100 onwards in byte order.
/// </summary>
internal static class ByteLevel
{
    public static readonly char[] ByteToChar = new char[256];
    private static readonly short[] s_charToByte = new short[0x200];

    static ByteLevel()
    {
        Array.Fill(s_charToByte, (short)-1);
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            char c = printable ? (char)b : (char)(256 + n++);
            ByteToChar[b] = c;
            s_charToByte[c] = (short)b;
        }
    }

    /// <summary>The byte a byte-level character stands for, or -1 when the character is outside the alphabet.</summary>
    public static int CharToByte(char c) => c < s_charToByte.Length ? s_charToByte[c] : -1;

    /// <summary>
    /// The bytes HF's ByteLevel decoder produces for one token: the alphabet mapped back to bytes, or, when any character
    /// is outside the alphabet (added tokens such as "&lt;|im_start|&gt; x"), the token's own UTF-8.
    /// </summary>
    public static byte[] DecodeToken(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            int b = CharToByte(token[i]);
            if (b < 0) return System.Text.Encoding.UTF8.GetBytes(token);
            bytes[i] = (byte)b;
        }
        return bytes;
    }

    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        return string.Create(bytes.Length, bytes, static (span, b) =>
        {
            for (int i = 0; i < b.Length; i++) span[i] = ByteToChar[b[i]];
        });
    }
}
