using Apb.Tokenization.Jinja;

namespace Apb.Tokenization;

/// <summary>
/// Stands in for a chat_template that uses something outside the interpreter's subset, so the tokenizer still loads
/// (encode, decode) and only chat rendering fails, with the construct, its line and the file.
/// </summary>
public sealed class UnsupportedChatTemplate(string source, TemplateException problem) : ChatTemplate
{
    public override string Name => "unsupported";

    public override string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) => throw Error();

    internal ApbException Error() => new(
        $"{source}: the chat template cannot be used: {problem.Message}. Pass another template with --chat-template FILE, " +
        "or send a plain prompt.", problem);
}
