namespace Apb.Tokenization;

/// <summary>One chat turn. Roles are the Hugging Face ones: "system", "user", "assistant" (and "tool" for ChatML).</summary>
public record ChatMessage(string Role, string Content);

/// <summary>
/// A rendered APB prompt cut at the two places the engine cares about: <see cref="Prefix"/> (template text before the
/// user's content), <see cref="Document"/> (the long context, spread over ranks) and <see cref="Suffix"/> (the question,
/// end of turn and assistant header). Concatenated they equal the rendered conversation.
/// </summary>
public record ChatPieces(string Prefix, string Document, string Suffix)
{
    public string Text => Prefix + Document + Suffix;
}

/// <summary>
/// A chat template, reimplemented in C# for the template families we support instead of interpreting the Jinja
/// source: the product has no Jinja engine, and these few formats are what the supported models use.
/// Chosen by <see cref="FromConfig"/> from tokenizer_config.json's "chat_template".
/// </summary>
public abstract class ChatTemplate
{
    /// <summary>"llama3", "chatml", "plain" or "unsupported".</summary>
    public abstract string Name { get; }

    /// <summary>The conversation as the model's template writes it, with the assistant header at the end when
    /// <paramref name="addGenerationPrompt"/>.</summary>
    public abstract string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt);

    /// <summary>
    /// For one optional system message and the user turn <c>document + "\n\n" + question</c>: the pieces whose
    /// concatenation is <c>Render([system?, user], addGenerationPrompt: true)</c>.
    /// </summary>
    public abstract ChatPieces Split(string? system, string document, string question);

    /// <summary>The text that closes a turn ("&lt;|eot_id|&gt;", "&lt;|im_end|&gt;"); a natural stop token. Null for plain.</summary>
    public virtual string? EndOfTurn => null;

    /// <summary>
    /// Whether rendered text should be encoded with <c>addSpecialTokens: true</c>. Chat templates write BOS themselves
    /// (HF's apply_chat_template encodes without special tokens); plain prompts rely on the tokenizer's post-processor.
    /// </summary>
    public virtual bool EncodeWithSpecialTokens => false;

    public override string ToString() => Name;

    /// <summary>
    /// Picks the template family from the Jinja source: "llama3" when it contains &lt;|start_header_id|&gt;, "chatml" when
    /// it contains &lt;|im_start|&gt;, "plain" when there is none, "unsupported" otherwise (rendering then fails with a
    /// message naming <paramref name="source"/>).
    /// </summary>
    public static ChatTemplate FromConfig(string? chatTemplate, string? bosToken, string source = "tokenizer_config.json")
    {
        if (string.IsNullOrEmpty(chatTemplate)) return new PlainChatTemplate();
        if (chatTemplate.Contains("<|start_header_id|>")) return new Llama3ChatTemplate(bosToken ?? "");
        if (chatTemplate.Contains("<|im_start|>"))
            return new ChatMlChatTemplate(ChatMlChatTemplate.DefaultSystemIn(chatTemplate), chatTemplate.Contains("<think>"));
        return new UnsupportedChatTemplate(source);
    }

    // Python's str.strip() set (what Jinja's trim uses): .NET's whitespace plus the separators U+001C..U+001F.
    internal static bool IsPythonSpace(char c) => char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f';

    internal static string PythonStrip(string s)
    {
        int start = 0, end = s.Length;
        while (start < end && IsPythonSpace(s[start])) start++;
        while (end > start && IsPythonSpace(s[end - 1])) end--;
        return s[start..end];
    }
}
