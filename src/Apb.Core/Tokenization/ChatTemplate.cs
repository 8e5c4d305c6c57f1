using Apb.Tokenization.Jinja;

namespace Apb.Tokenization;

/// <summary>One chat turn. Roles are the Hugging Face ones: "system", "user", "assistant", "tool".</summary>
public record ChatMessage(string Role, string Content);

/// <summary>
/// How a conversation becomes the model's prompt text: the checkpoint's Jinja chat_template rendered as transformers'
/// apply_chat_template renders it (<see cref="JinjaChatTemplate"/>), or, for base models without one, the plain join
/// of <see cref="PlainChatTemplate"/>. Chosen by <see cref="FromConfig(string?, string?, string?, string)"/>.
/// </summary>
public abstract class ChatTemplate
{
    /// <summary>A chat template file (chat_template.jinja, --chat-template) is read up to this size: real ones are kilobytes.</summary>
    public const long MaxFileBytes = 16L << 20;
    internal const string FileWhat = "Jinja chat template";

    /// <summary>"jinja", "plain" or "unsupported" (a template outside the interpreter's subset).</summary>
    public abstract string Name { get; }

    /// <summary>The conversation as the model's template writes it, with the assistant header at the end when
    /// <paramref name="addGenerationPrompt"/>.</summary>
    public abstract string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt);

    /// <summary>
    /// Whether rendered text should be encoded with <c>addSpecialTokens: true</c>. Chat templates write BOS themselves
    /// (HF's apply_chat_template encodes without special tokens); plain prompts rely on the tokenizer's post-processor.
    /// </summary>
    public virtual bool EncodeWithSpecialTokens => false;

    /// <summary>
    /// This template with extra template variables (vLLM's chat_template_kwargs, e.g. Qwen3's enable_thinking: false).
    /// Templates without variables ignore them.
    /// </summary>
    public virtual ChatTemplate WithArguments(IReadOnlyDictionary<string, object?> arguments) => this;

    public override string ToString() => Name;

    /// <summary>
    /// The template for tokenizer_config.json's chat_template (or chat_template.jinja) text: plain when there is none;
    /// "unsupported" when it uses something outside the interpreter's subset, which then fails at rendering with
    /// the construct and line, naming <paramref name="source"/> (the tokenizer still encodes and decodes).
    /// </summary>
    public static ChatTemplate FromConfig(string? chatTemplate, string? bosToken, string? eosToken = null,
        string source = "tokenizer_config.json") =>
        FromSource(chatTemplate, SpecialTokens(bosToken, eosToken, null, null), source);

    internal static ChatTemplate FromTokenizerConfig(TokenizerConfig config, string source) =>
        FromSource(config.ChatTemplate, SpecialTokens(config.BosToken, config.EosToken, config.UnkToken, config.PadToken), source);

    /// <summary>A template file given on the command line (--chat-template), with the tokenizer's special tokens.</summary>
    public static ChatTemplate Load(string path, HfTokenizer tokenizer)
    {
        if (!File.Exists(path))
            throw new ApbException($"chat template file '{path}' does not exist: expected a Jinja template (the text of a " +
                                   "model's chat_template). Check the path.");
        string text = Utf8File.ReadText(path, FileWhat, MaxFileBytes);
        if (string.IsNullOrWhiteSpace(text)) throw new ApbException($"{path}: the chat template file is empty; expected a Jinja template.");
        var template = FromSource(text, SpecialTokens(tokenizer.BosToken, tokenizer.EosToken, null, null), path);
        if (template is UnsupportedChatTemplate unsupported) throw unsupported.Error();
        return template;
    }

    private static ChatTemplate FromSource(string? text, IReadOnlyDictionary<string, object?> specialTokens, string source)
    {
        if (string.IsNullOrEmpty(text)) return new PlainChatTemplate();
        try
        {
            return new JinjaChatTemplate(JinjaTemplate.Parse(text), specialTokens, new Dictionary<string, object?>(), source);
        }
        catch (TemplateException e)
        {
            return new UnsupportedChatTemplate(source, e);
        }
    }

    // transformers passes the tokenizer's special tokens that are set (special_tokens_map) as template variables.
    private static Dictionary<string, object?> SpecialTokens(string? bos, string? eos, string? unk, string? pad)
    {
        var tokens = new Dictionary<string, object?>();
        if (bos is not null) tokens["bos_token"] = bos;
        if (eos is not null) tokens["eos_token"] = eos;
        if (unk is not null) tokens["unk_token"] = unk;
        if (pad is not null) tokens["pad_token"] = pad;
        return tokens;
    }
}
