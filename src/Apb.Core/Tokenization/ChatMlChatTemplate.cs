using System.Text;
using System.Text.RegularExpressions;

namespace Apb.Tokenization;

/// <summary>
/// ChatML as the Qwen templates write it: <c>&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n</c> per turn, then
/// <c>&lt;|im_start|&gt;assistant\n</c>. Two variations are taken from the template source:
/// a default system message when the template carries one (Qwen2.5: "You are Qwen, created by Alibaba Cloud. You are
/// a helpful assistant."; Qwen3 has none), and Qwen3's reasoning handling when the template mentions &lt;think&gt;
/// (assistant turns after the last user query carry a &lt;think&gt; block; earlier ones lose theirs). Tool calls are
/// not rendered; "tool" messages become &lt;tool_response&gt; blocks as in the template.
/// </summary>
public sealed partial class ChatMlChatTemplate(string? defaultSystem, bool thinkAware) : ChatTemplate
{
    public override string Name => "chatml";

    public override string? EndOfTurn => "<|im_end|>";

    /// <summary>The system message the template uses when the conversation has none, or null.</summary>
    public string? DefaultSystem => defaultSystem;

    // Qwen2.5 writes its default as the literal '<|im_start|>system\nYou are Qwen...<|im_end|>\n' in the else branch;
    // a template that only concatenates messages[0].content has a quote right after "system\n" and does not match.
    [GeneratedRegex(@"<\|im_start\|>system\\n([^'""<{}]+)<\|im_end\|>")]
    private static partial Regex DefaultSystemPattern();

    internal static string? DefaultSystemIn(string template) =>
        DefaultSystemPattern().Match(template) is { Success: true } m ? m.Groups[1].Value : null;

    public override string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var sb = new StringBuilder();
        if (messages.Count > 0 && messages[0].Role == "system") Turn(sb, "system", messages[0].Content);
        else if (defaultSystem is not null) Turn(sb, "system", defaultSystem);

        int lastQuery = LastQueryIndex(messages);
        for (int i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            switch (m.Role)
            {
                case "system" when i == 0:
                    break;
                case "user" or "system":
                    Turn(sb, m.Role, m.Content);
                    break;
                case "assistant":
                    sb.Append("<|im_start|>assistant\n").Append(AssistantContent(m.Content, i > lastQuery,
                        i == messages.Count - 1)).Append("<|im_end|>\n");
                    break;
                case "tool":
                    if (i == 0 || messages[i - 1].Role != "tool") sb.Append("<|im_start|>user");
                    sb.Append("\n<tool_response>\n").Append(m.Content).Append("\n</tool_response>");
                    if (i == messages.Count - 1 || messages[i + 1].Role != "tool") sb.Append("<|im_end|>\n");
                    break;
                default:
                    throw new ApbException(
                        $"chat message {i} has role \"{m.Role}\"; the chatml template renders the roles system, user, " +
                        "assistant and tool. Use one of those.");
            }
        }
        if (addGenerationPrompt) sb.Append("<|im_start|>assistant\n");
        return sb.ToString();
    }

    public override ChatPieces Split(string? system, string document, string question)
    {
        var prefix = new StringBuilder();
        string? systemText = system ?? defaultSystem;
        if (systemText is not null) Turn(prefix, "system", systemText);
        prefix.Append("<|im_start|>user\n");
        return new ChatPieces(prefix.ToString(), document, "\n\n" + question + "<|im_end|>\n<|im_start|>assistant\n");
    }

    private static void Turn(StringBuilder sb, string role, string content) =>
        sb.Append("<|im_start|>").Append(role).Append('\n').Append(content).Append("<|im_end|>\n");

    // Qwen3: the last user message that is not a wrapped tool response; turns after it are the current answer.
    private int LastQueryIndex(IReadOnlyList<ChatMessage> messages)
    {
        for (int i = messages.Count - 1; i >= 0; i--)
        {
            var m = messages[i];
            if (m.Role == "user" && !(m.Content.StartsWith("<tool_response>", StringComparison.Ordinal)
                                      && m.Content.EndsWith("</tool_response>", StringComparison.Ordinal)))
                return i;
        }
        return messages.Count - 1;
    }

    private string AssistantContent(string content, bool afterLastQuery, bool isLast)
    {
        if (!thinkAware) return content;
        string reasoning = "";
        int close = content.IndexOf("</think>", StringComparison.Ordinal);
        if (close >= 0)
        {
            string beforeFirstClose = content[..close].TrimEnd('\n');
            int open = beforeFirstClose.LastIndexOf("<think>", StringComparison.Ordinal);
            reasoning = (open >= 0 ? beforeFirstClose[(open + "<think>".Length)..] : beforeFirstClose).TrimStart('\n');
            int lastClose = content.LastIndexOf("</think>", StringComparison.Ordinal);
            content = content[(lastClose + "</think>".Length)..].TrimStart('\n');
        }
        if (afterLastQuery && (isLast || reasoning.Length > 0))
            return "<think>\n" + reasoning.Trim('\n') + "\n</think>\n\n" + content.TrimStart('\n');
        return content;
    }
}
