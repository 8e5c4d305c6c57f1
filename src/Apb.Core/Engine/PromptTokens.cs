using Apb.Tokenization;

namespace Apb.Engine;

/// <summary>
/// A request's tokens split the way APB needs them: the long context (the document, with the chat template's header
/// before it) and the short query (the question, end of turn and assistant header), plus where the query goes into
/// APB's anchor: after the header's tokens.
/// </summary>
public sealed record PromptTokens(IReadOnlyList<int> Context, IReadOnlyList<int> Query, int AnchorInsertAt)
{
    public int Count => Context.Count + Query.Count;
    public IReadOnlyList<int> All => Context.Concat(Query).ToArray();

    /// <summary>
    /// Tokenizes the whole prompt once, then finds the boundaries by encoding its leading parts: BPE can merge tokens
    /// across a boundary (a document ending in "." before "\n\n"), so each boundary is the longest common prefix of the
    /// whole prompt's ids and the part's ids. The ids are always exactly those of the whole prompt.
    /// </summary>
    public static PromptTokens Build(HfTokenizer tok, bool chat, string? system, string document, string question)
    {
        string header, context, full;
        bool special;
        if (chat)
        {
            var p = tok.ChatTemplate.Split(system, document, question);
            header = p.Prefix; context = p.Prefix + p.Document; full = context + p.Suffix;
            if (question.Length == 0)
            {
                // No question: the user turn is the document alone, rendered as the template renders it (Split would
                // add the blank line that separates a question).
                var messages = new List<ChatMessage>();
                if (system != null) messages.Add(new ChatMessage("system", system));
                messages.Add(new ChatMessage("user", document));
                full = tok.ChatTemplate.Render(messages, addGenerationPrompt: true);
            }
            special = tok.ChatTemplate.EncodeWithSpecialTokens;
        }
        else
        {
            header = ""; context = document; full = document + question;
            special = true;
        }
        var ids = tok.Encode(full, special);
        int n = CommonPrefix(ids, tok.Encode(context, special));
        int h = header.Length == 0 ? 0 : Math.Min(n, CommonPrefix(ids, tok.Encode(header, special)));
        return new PromptTokens(ids.Take(n).ToArray(), ids.Skip(n).ToArray(), h);
    }

    /// <summary>
    /// A single chat prompt split at its last blank line: everything before is the document, the final paragraph the
    /// question (the template puts the blank line back between them). A prompt without a blank line is all document.
    /// </summary>
    public static (string Document, string Question) SplitPrompt(string prompt)
    {
        int cut = prompt.TrimEnd().LastIndexOf("\n\n", StringComparison.Ordinal);
        return cut < 0 ? (prompt, "") : (prompt[..cut], prompt[(cut + 2)..]);
    }

    static int CommonPrefix(IReadOnlyList<int> a, IReadOnlyList<int> b)
    {
        int n = 0;
        while (n < a.Count && n < b.Count && a[n] == b[n]) n++;
        return n;
    }
}
