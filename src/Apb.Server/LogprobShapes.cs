using System.Text;
using Apb.Engine;
using Apb.Tokenization;

namespace Apb.Server;

/// <summary>
/// The engine's per-token logprobs in OpenAI's two shapes. A token's text is its bytes read as UTF-8; a token that is
/// part of a character (byte-level BPE splits some) is written "bytes:\xNN..." as OpenAI writes it, and "bytes" always
/// holds the exact bytes. Logprobs below -9999 (or not finite) are written as -9999, OpenAI's floor.
/// </summary>
static class LogprobShapes
{
    const float Floor = -9999f;

    public static ChatLogprobs Chat(HfTokenizer tokenizer, IReadOnlyList<TokenLogprob> tokens) =>
        new(tokens.Select(t =>
        {
            var (text, bytes) = Token(tokenizer, t.Token);
            return new ChatTokenLogprob(text, Clamp(t.Logprob), bytes,
                t.Top.Select(a => { var (at, ab) = Token(tokenizer, a.Token); return new ChatTopLogprob(at, Clamp(a.Logprob), ab); }).ToArray());
        }).ToArray());

    /// <summary>The legacy shape; text_offset counts characters from <paramref name="startOffset"/>.</summary>
    public static TextLogprobs Text(HfTokenizer tokenizer, IReadOnlyList<TokenLogprob> tokens, int startOffset = 0)
    {
        var texts = new List<string>(tokens.Count);
        var offsets = new List<int>(tokens.Count);
        var tops = new List<Dictionary<string, float>>(tokens.Count);
        int offset = startOffset;
        foreach (var t in tokens)
        {
            string text = Token(tokenizer, t.Token).Text;
            texts.Add(text);
            offsets.Add(offset);
            offset += text.Length;
            var top = new Dictionary<string, float>();
            // Two ids can read as the same text (special tokens, partial characters): the likelier one is kept.
            foreach (var a in t.Top) top.TryAdd(Token(tokenizer, a.Token).Text, Clamp(a.Logprob));
            tops.Add(top);
        }
        return new TextLogprobs(texts, tokens.Select(t => Clamp(t.Logprob)).ToArray(), tops, offsets);
    }

    static float Clamp(float x) => float.IsNaN(x) ? Floor : Math.Max(x, Floor);

    static (string Text, int[] Bytes) Token(HfTokenizer tokenizer, int id)
    {
        // Ids past the tokenizer's vocabulary (a model whose embedding table is padded) have no text.
        if (tokenizer.IdToToken(id) is null) return ("", []);
        byte[] bytes = tokenizer.TokenBytes(id);
        int[] ints = Array.ConvertAll(bytes, b => (int)b);
        if (System.Text.Unicode.Utf8.IsValid(bytes)) return (Encoding.UTF8.GetString(bytes), ints);
        var sb = new StringBuilder("bytes:");
        foreach (byte b in bytes) sb.Append("\\x").Append(b.ToString("x2"));
        return (sb.ToString(), ints);
    }
}
