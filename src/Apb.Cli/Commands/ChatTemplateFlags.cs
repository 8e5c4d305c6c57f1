using System.CommandLine;
using System.Text.Json;
using Apb.Serving;
using Apb.Tokenization;

namespace Apb.Cli.Commands;

/// <summary>
/// --chat-template FILE (a Jinja template instead of the checkpoint's) and --chat-template-kwargs JSON (template
/// arguments such as Qwen3's {"enable_thinking": false}), vLLM's names, for generate, serve and tokenize.
/// </summary>
sealed class ChatTemplateFlags
{
    readonly Option<string?> _template = new("--chat-template")
    {
        Description = "a Jinja chat template file to use instead of the model's (tokenizer_config.json / chat_template.jinja)",
    };

    readonly Option<string?> _kwargs = new("--chat-template-kwargs")
    {
        Description = "template arguments as a JSON object, e.g. '{\"enable_thinking\": false}'",
    };

    public void AddTo(Command cmd)
    {
        cmd.Options.Add(_template);
        cmd.Options.Add(_kwargs);
    }

    /// <summary>The tokenizer with the chosen template and arguments (itself when neither flag is given).</summary>
    public HfTokenizer Apply(HfTokenizer tokenizer, ParseResult r)
    {
        var template = r.GetValue(_template) is { } file ? ChatTemplate.Load(file, tokenizer) : tokenizer.ChatTemplate;
        if (r.GetValue(_kwargs) is { } json)
        {
            JsonDocument doc;
            try { doc = JsonDocument.Parse(json); }
            catch (JsonException e)
            {
                throw new ApbException($"--chat-template-kwargs is not valid JSON ({e.Message}); expected an object such as '{{\"enable_thinking\": false}}'.");
            }
            using (doc) template = template.WithArguments(JinjaChatTemplate.ArgumentsFromJson(doc.RootElement, "--chat-template-kwargs"));
        }
        return ReferenceEquals(template, tokenizer.ChatTemplate) ? tokenizer : tokenizer.WithChatTemplate(template);
    }

    public ServedModel Apply(ServedModel model, ParseResult r)
    {
        var tokenizer = Apply(model.Tokenizer, r);
        return ReferenceEquals(tokenizer, model.Tokenizer) ? model
            : new ServedModel(model.Id, tokenizer, model.MaxPositions, model.StopTokens, model.NewSession) { CheckPrompt = model.CheckPrompt };
    }
}
