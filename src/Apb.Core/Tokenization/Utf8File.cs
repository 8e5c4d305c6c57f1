using System.Text;
using Apb.Checkpoints;

namespace Apb.Tokenization;

/// <summary>
/// Reads the tokenizer's text files (tokenizer.json, tokenizer_config.json, chat templates), which Hugging Face writes
/// as UTF-8: a UTF-16 file or invalid UTF-8 is refused with the file and byte offset instead of being read as
/// replacement characters or failing later inside the JSON reader. The read is <see cref="InputFile"/>'s: a FIFO
/// nobody writes to fails after its open time limit, and a file past <c>maxBytes</c> (/dev/zero) is refused.
/// </summary>
public static class Utf8File
{
    /// <summary>
    /// The file's bytes without a UTF-8 byte order mark; <paramref name="what"/> says what the file should be, without
    /// an article ("Hugging Face tokenizer.json").
    /// </summary>
    public static byte[] ReadBytes(string path, string what, long maxBytes)
    {
        byte[] bytes = InputFile.ReadAllBytes(path, maxBytes, what);
        if (bytes.Length >= 2 && ((bytes[0] == 0xFF && bytes[1] == 0xFE) || (bytes[0] == 0xFE && bytes[1] == 0xFF)))
            throw new ApbException(
                $"{path} is UTF-16 encoded (it starts with a UTF-16 byte order mark); expected a {what} in UTF-8, as " +
                "Hugging Face writes it. Convert it to UTF-8 (e.g. iconv -f UTF-16 -t UTF-8) or download it again.");
        int start = bytes.Length >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? 3 : 0;
        var body = bytes.AsSpan(start);
        if (!System.Text.Unicode.Utf8.IsValid(body))
        {
            int offset = FirstInvalid(body);
            throw new ApbException(
                $"{path} is not valid UTF-8 (byte 0x{body[offset]:X2} at offset {start + offset} does not belong to a " +
                $"UTF-8 character); expected a {what} in UTF-8. The file is damaged or in another encoding; download it again.");
        }
        return start == 0 ? bytes : body.ToArray();
    }

    public static string ReadText(string path, string what, long maxBytes) => Encoding.UTF8.GetString(ReadBytes(path, what, maxBytes));

    private static int FirstInvalid(ReadOnlySpan<byte> bytes)
    {
        int i = 0;
        while (i < bytes.Length)
        {
            if (Rune.DecodeFromUtf8(bytes[i..], out _, out int consumed) != System.Buffers.OperationStatus.Done) return i;
            i += consumed;
        }
        return i;
    }

    /// <summary>
    /// The error for a JSON string whose \u escapes are not valid UTF-16 (a lone surrogate such as "\ud800"):
    /// System.Text.Json reports it as InvalidOperationException when the string is read.
    /// </summary>
    internal static ApbException InvalidEscape(string path, string what, InvalidOperationException e) => new(
        $"{path}: a string in the file is not valid Unicode ({e.Message}); expected a {what} whose \\u escapes form " +
        "valid UTF-16 (a lone surrogate such as \\ud800 is not). The file is damaged; download it again.", e);
}
