using Apb.Tokenization;

namespace Apb.Serving;

/// <summary>
/// A prompt as the engine takes it: <see cref="Context"/> (the long document, which sequence-parallel strategies
/// spread over ranks) and <see cref="Query"/> (the question, which APB hands every rank); prefilled in that order.
/// </summary>
public sealed record Prompt(IReadOnlyList<int> Context, IReadOnlyList<int> Query)
{
    public int Count => Context.Count + Query.Count;

    const string Paragraph = "\n\n";
    // Stands in for the question while locating it in a rendered multi-turn conversation; private-use characters that
    // no template rewrites and real text does not contain.
    const string Marker = "\uE000apb-question\uE000";

    /// <summary>
    /// A chat conversation rendered by the model's template and cut for APB. The document is everything in the last
    /// user message before its final paragraph (up to the last "\n\n"); the question is that final paragraph. For a
    /// [system?, user] conversation <see cref="ChatTemplate.Split"/> makes the cut: context = template prefix +
    /// document, query = "\n\n" + question + end of turn + assistant header. With earlier turns the same cut is found
    /// in the rendered conversation, so everything before the question (all earlier turns too) is context. A last user
    /// message without a blank line is all question. Either way context + query is the text Render() gives.
    /// </summary>
    public static Prompt FromChat(HfTokenizer tokenizer, IReadOnlyList<ChatMessage> messages)
    {
        var template = tokenizer.ChatTemplate;
        string full = template.Render(messages, addGenerationPrompt: true);
        int last = -1;
        for (int i = messages.Count - 1; i >= 0 && last < 0; i--) if (messages[i].Role == "user") last = i;
        if (last < 0) return Encode(tokenizer, full, "");

        string content = messages[last].Content;
        int cut = content.LastIndexOf(Paragraph, StringComparison.Ordinal);
        bool singleTurn = last == messages.Count - 1 && (last == 0 || (last == 1 && messages[0].Role == "system"));
        if (singleTurn && cut >= 0)
        {
            var pieces = template.Split(last == 1 ? messages[0].Content : null, content[..cut], content[(cut + Paragraph.Length)..]);
            if (pieces.Text == full) return Encode(tokenizer, pieces.Prefix + pieces.Document, pieces.Suffix);
        }

        var marked = messages.ToArray();
        marked[last] = messages[last] with { Content = (cut >= 0 ? content[..cut] + Paragraph : "") + Marker };
        string withMarker = template.Render(marked, addGenerationPrompt: true);
        int at = withMarker.IndexOf(Marker, StringComparison.Ordinal);
        if (at < 0 || at > full.Length || string.CompareOrdinal(full, 0, withMarker, 0, at) != 0) return Encode(tokenizer, full, "");
        if (cut >= 0 && at >= Paragraph.Length && string.CompareOrdinal(withMarker, at - Paragraph.Length, Paragraph, 0, Paragraph.Length) == 0)
            at -= Paragraph.Length;
        return Encode(tokenizer, full[..at], full[at..]);
    }

    /// <summary>
    /// A raw completion prompt (no template), cut the same way: context up to the last "\n\n", query from there on;
    /// without a blank line it is all context. Encoded as HF's tokenizer(text) would (post-processor BOS included).
    /// </summary>
    public static Prompt FromText(HfTokenizer tokenizer, string text)
    {
        int cut = text.LastIndexOf(Paragraph, StringComparison.Ordinal);
        if (cut < 0) return new Prompt(tokenizer.Encode(text, addSpecialTokens: true), Array.Empty<int>());
        return new Prompt(tokenizer.Encode(text[..cut], addSpecialTokens: true), tokenizer.Encode(text[cut..], addSpecialTokens: false));
    }

    static Prompt Encode(HfTokenizer tokenizer, string context, string query)
    {
        bool special = tokenizer.ChatTemplate.EncodeWithSpecialTokens;
        var c = tokenizer.Encode(context, addSpecialTokens: special);
        var q = query.Length == 0 ? Array.Empty<int>() : tokenizer.Encode(query, addSpecialTokens: false);
        return new Prompt(c, q);
    }
}
