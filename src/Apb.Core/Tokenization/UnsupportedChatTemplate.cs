namespace Apb.Tokenization;

/// <summary>
/// Stands in for a chat_template we do not implement, so the tokenizer still loads (encode, decode) and only chat
/// rendering fails, with a message saying what is supported.
/// </summary>
public sealed class UnsupportedChatTemplate(string source) : ChatTemplate
{
    public override string Name => "unsupported";

    public override string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) => throw Error();

    public override ChatPieces Split(string? system, string document, string question) => throw Error();

    private ApbException Error() => new(
        $"{source}: chat_template is neither Llama-3 style (contains <|start_header_id|>) nor ChatML (contains " +
        "<|im_start|>); those two and no template at all (plain prompts, for base models) are supported. " +
        "Use a model with one of these templates, or send a plain prompt.");
}
