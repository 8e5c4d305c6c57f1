using Apb.Tokenization;

namespace Apb.Engine;

/// <summary>
/// A request's tokens split the way APB needs them: the long <see cref="Context"/> (the document, with everything the
/// chat template writes before it), prefilled across ranks, and the short <see cref="Query"/> (the question, end of turn
/// and assistant header), which APB also puts into every rank's anchor after <see cref="AnchorInsertAt"/> context tokens
/// (the template's header). Context + Query are always exactly the ids of the whole rendered prompt.
/// </summary>
public sealed record PromptTokens(IReadOnlyList<int> Context, IReadOnlyList<int> Query, int AnchorInsertAt)
{
    public int Count => Context.Count + Query.Count;
    public IReadOnlyList<int> All => Context.Concat(Query).ToArray();

    const string Paragraph = "\n\n";
    // Stands in for the question while locating it in a rendered multi-turn conversation: private-use characters that
    // no template rewrites and real text does not contain.
    const string Marker = "\uE000apb-question\uE000";

    /// <summary>
    /// A conversation rendered by the model's template and cut for APB: the document is everything in the last user
    /// message before its final paragraph (up to its last "\n\n"), the question that final paragraph. Everything before
    /// the question (earlier turns too) is context. A last user message without a blank line is all document.
    /// Every builder here throws <see cref="PromptTooLongException"/> once the prompt passes <paramref name="maxTokens"/>.
    /// </summary>
    public static PromptTokens FromChat(HfTokenizer tokenizer, IReadOnlyList<ChatMessage> messages, int maxTokens = int.MaxValue)
    {
        var template = tokenizer.ChatTemplate;
        string full = template.Render(messages, addGenerationPrompt: true);
        int last = -1;
        for (int i = messages.Count - 1; i >= 0 && last < 0; i--) if (messages[i].Role == "user") last = i;
        if (last < 0) return Cut(tokenizer, full, full, "", maxTokens);

        string content = messages[last].Content;
        string header = HeaderOf(full, messages);
        int cut = content.LastIndexOf(Paragraph, StringComparison.Ordinal);
        if (cut < 0)
        {
            // No question: the context ends where the user's text does.
            int end = LocateContentEnd(template, messages, last, content);
            return end < 0 ? Cut(tokenizer, full, full, header, maxTokens) : Cut(tokenizer, full, full[..end], header, maxTokens);
        }
        var marked = messages.ToArray();
        marked[last] = messages[last] with { Content = content[..cut] + Paragraph + Marker };
        string withMarker = template.Render(marked, addGenerationPrompt: true);
        int at = withMarker.IndexOf(Marker, StringComparison.Ordinal) - Paragraph.Length;
        if (at < 0 || at > full.Length || string.CompareOrdinal(full, 0, withMarker, 0, at) != 0) return Cut(tokenizer, full, full, header, maxTokens);
        return Cut(tokenizer, full, full[..at], header, maxTokens);
    }

    /// <summary>The CLI's request: an optional system message and one user turn, document + "\n\n" + question.</summary>
    public static PromptTokens FromChat(HfTokenizer tokenizer, string? system, string document, string question, int maxTokens = int.MaxValue)
    {
        var m = new List<ChatMessage>();
        if (!string.IsNullOrEmpty(system)) m.Add(new ChatMessage("system", system));
        m.Add(new ChatMessage("user", question.Length == 0 ? document : document + Paragraph + question));
        return FromChat(tokenizer, m, maxTokens);
    }

    /// <summary>
    /// Raw text (no template), encoded as HF's tokenizer(text): context up to the last "\n\n", query from there on;
    /// without a blank line it is all context.
    /// </summary>
    public static PromptTokens FromText(HfTokenizer tokenizer, string text, int maxTokens = int.MaxValue)
    {
        int cut = text.LastIndexOf(Paragraph, StringComparison.Ordinal);
        return Cut(tokenizer, text, cut < 0 ? text : text[..cut], "", maxTokens, special: true);
    }

    /// <summary>Raw document and question given apart: the context is the document, the query the question.</summary>
    public static PromptTokens FromParts(HfTokenizer tokenizer, string document, string question, int maxTokens = int.MaxValue) =>
        Cut(tokenizer, document + question, document, "", maxTokens, special: true);

    /// <summary>
    /// Tokenizes the whole prompt once and places each boundary at the longest common prefix of the whole prompt's ids and
    /// the ids of the text before it: BPE can merge tokens across a boundary (a document's "." with the "\n\n" after it).
    /// </summary>
    static PromptTokens Cut(HfTokenizer tok, string full, string context, string header, int maxTokens, bool? special = null)
    {
        bool s = special ?? tok.ChatTemplate.EncodeWithSpecialTokens;
        var ids = tok.Encode(full, s, maxTokens);
        if (ids.Count > maxTokens) throw new PromptTooLongException(maxTokens);
        int n = CommonPrefix(ids, tok.Encode(context, s, ids.Count));
        int h = header.Length == 0 ? 0 : Math.Min(n, CommonPrefix(ids, tok.Encode(header, s, ids.Count)));
        return new PromptTokens(ids.Take(n).ToArray(), ids.Skip(n).ToArray(), h);
    }

    // The template's text before the first user content: BOS, the system block and the user header.
    static string HeaderOf(string full, IReadOnlyList<ChatMessage> messages)
    {
        var firstUser = messages.FirstOrDefault(m => m.Role == "user");
        if (firstUser is null || firstUser.Content.Length == 0) return "";
        int at = full.IndexOf(firstUser.Content.Trim(), StringComparison.Ordinal);
        return at < 0 ? "" : full[..at];
    }

    static int LocateContentEnd(ChatTemplate template, IReadOnlyList<ChatMessage> messages, int last, string content)
    {
        var marked = messages.ToArray();
        marked[last] = messages[last] with { Content = content + Marker };
        string withMarker = template.Render(marked, addGenerationPrompt: true);
        return withMarker.IndexOf(Marker, StringComparison.Ordinal);
    }

    static int CommonPrefix(IReadOnlyList<int> a, IReadOnlyList<int> b)
    {
        int n = 0;
        while (n < a.Count && n < b.Count && a[n] == b[n]) n++;
        return n;
    }
}
