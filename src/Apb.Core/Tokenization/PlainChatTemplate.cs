namespace Apb.Tokenization;

/// <summary>
/// What base models get (no chat_template): the message contents joined by a blank line, no roles, no generation
/// prompt. BOS, if the model wants one, comes from the tokenizer's post-processor.
/// </summary>
public sealed class PlainChatTemplate : ChatTemplate
{
    public override string Name => "plain";

    public override bool EncodeWithSpecialTokens => true;

    public override string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) =>
        string.Join("\n\n", messages.Select(m => m.Content));
}
