using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using Apb.Server;
using Apb.Tokenization;

namespace Apb.Cli.Commands;

/// <summary>
/// `apb tokenize`: token ids as Hugging Face gives them, from a folder that may hold only the tokenizer files.
/// --prompt TEXT prints {"ids": [...]} (HF's tokenizer(text)); --messages FILE prints {"text": ..., "ids": [...]}
/// (HF's apply_chat_template(messages, add_generation_prompt=True), rendered, then tokenized).
/// </summary>
static class TokenizeCommand
{
    public static Command Create(Io io)
    {
        var model = new ModelFlags();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "text to tokenize as tokenizer(text) does" };
        var messages = new Option<string?>("--messages") { Description = "a JSON file with a list of {\"role\", \"content\"} messages to render with the chat template and tokenize" };
        var templateFlags = new ChatTemplateFlags();
        var cmd = new Command("tokenize", "print the token ids of a text or of a chat conversation, as Hugging Face's tokenizer gives them (needs only tokenizer.json and tokenizer_config.json)")
        {
            prompt, messages,
        };
        model.AddTo(cmd);
        templateFlags.AddTo(cmd);
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            string? text = r.GetValue(prompt), file = r.GetValue(messages);
            if ((text is null) == (file is null)) throw new ApbException("give exactly one of --prompt TEXT or --messages FILE");
            var tokenizer = templateFlags.Apply(LoadTokenizer(CommonOptions.ResolveModel(model.Get(r))), r);

            using var output = new MemoryStream();
            using (var json = new Utf8JsonWriter(output, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            {
                json.WriteStartObject();
                IReadOnlyList<int> ids;
                if (text is not null) ids = tokenizer.Encode(text);
                else
                {
                    var template = tokenizer.ChatTemplate;
                    if (template is PlainChatTemplate)
                        throw new ApbException("the tokenizer has no chat template (no chat_template in tokenizer_config.json and no " +
                                               "chat_template.jinja), so a conversation cannot be rendered; pass --chat-template FILE, or --prompt TEXT.");
                    if (!File.Exists(file)) throw new ApbException($"messages file '{file}' does not exist: expected a JSON list of {{\"role\", \"content\"}} messages.");
                    var conversation = TokenizeEndpoints.ParseMessages(Utf8File.ReadText(file!, "JSON list of chat messages", GenerateCommand.MaxPromptFileBytes), file!);
                    string rendered = template.Render(conversation, addGenerationPrompt: true);
                    json.WriteString("text", rendered);
                    ids = tokenizer.Encode(rendered, template.EncodeWithSpecialTokens);
                }
                json.WriteStartArray("ids");
                foreach (int id in ids) json.WriteNumberValue(id);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            io.Out.WriteLine(System.Text.Encoding.UTF8.GetString(output.ToArray()));
            return 0;
        }));
        return cmd;
    }

    /// <summary>tokenizer.json and, when present, tokenizer_config.json (special tokens, chat template) of a folder.</summary>
    static HfTokenizer LoadTokenizer(string dir)
    {
        string json = Path.Combine(dir, "tokenizer.json");
        if (!File.Exists(json))
            throw new ApbException($"{json}: file not found (expected a Hugging Face model or tokenizer folder with tokenizer.json)");
        string config = Path.Combine(dir, "tokenizer_config.json");
        return HfTokenizer.Load(json, File.Exists(config) ? config : null);
    }
}
