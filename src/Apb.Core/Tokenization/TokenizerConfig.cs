using System.Text.Json;

namespace Apb.Tokenization;

/// <summary>
/// The parts of tokenizer_config.json we use: the special-token names, the chat template, and the fields by which
/// transformers rebuilds the tokenizer (see <see cref="TransformersTokenizerClass"/>).
/// </summary>
internal sealed class TokenizerConfig
{
    public string? BosToken { get; private init; }
    public string? EosToken { get; private init; }
    public string? PadToken { get; private init; }
    public string? UnkToken { get; private init; }
    public string? ChatTemplate { get; private init; }
    /// <summary>The file the template came from (tokenizer_config.json or chat_template.jinja), for error messages.</summary>
    public string? ChatTemplateSource { get; private init; }
    /// <summary>"LlamaTokenizer", "LlamaTokenizerFast", "PreTrainedTokenizerFast", ...; null when absent.</summary>
    public string? TokenizerClass { get; private init; }
    /// <summary>legacy and add_prefix_space: null when absent or null (LlamaTokenizer then takes its defaults).</summary>
    public bool? Legacy { get; private init; }
    public bool? AddPrefixSpace { get; private init; }

    public static readonly TokenizerConfig Empty = new();

    // Real configs are kilobytes, or a few megabytes with a large added_tokens_decoder.
    private const long MaxBytes = 64L << 20;
    private const string What = "Hugging Face tokenizer_config.json";

    public static TokenizerConfig Read(string path)
    {
        if (!File.Exists(path))
            throw new ApbException(
                $"tokenizer config '{path}' does not exist: expected the model's tokenizer_config.json there. " +
                "Check the path, or leave the config out to use the tokenizer without chat template and special-token names.");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(Utf8File.ReadBytes(path, What, MaxBytes), new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new ApbException(
                $"tokenizer config '{path}' is not valid JSON ({e.Message}): expected a Hugging Face tokenizer_config.json. " +
                "Download it again.", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ApbException($"{path}: the top level is {root.ValueKind}; expected a JSON object. " +
                                       "This does not look like a tokenizer_config.json.");
            try
            {
                // As transformers: chat_template.jinja beside the config replaces the config's own template.
                string? jinja = JinjaFileBeside(path);
                string? template = jinja is null ? Template(root, path) : null;
                return new TokenizerConfig
                {
                    BosToken = TokenName(root, "bos_token", path),
                    EosToken = TokenName(root, "eos_token", path),
                    PadToken = TokenName(root, "pad_token", path),
                    UnkToken = TokenName(root, "unk_token", path),
                    ChatTemplate = template ?? (jinja is null ? null : Utf8File.ReadText(jinja, Tokenization.ChatTemplate.FileWhat, Tokenization.ChatTemplate.MaxFileBytes)),
                    ChatTemplateSource = template is not null ? path : jinja,
                    TokenizerClass = String(root, "tokenizer_class", path),
                    Legacy = Bool(root, "legacy", path, nullValue: null),
                    AddPrefixSpace = Bool(root, "add_prefix_space", path, nullValue: null),
                };
            }
            catch (InvalidOperationException e)
            {
                throw Utf8File.InvalidEscape(path, What, e);
            }
        }
    }

    // Written either as "<s>" or as {"content": "<s>", "lstrip": false, ...} (AddedToken serialized by transformers).
    private static string? TokenName(JsonElement root, string name, string path)
    {
        if (!root.TryGetProperty(name, out var v)) return null;
        switch (v.ValueKind)
        {
            case JsonValueKind.Null: return null;
            case JsonValueKind.String: return v.GetString();
            case JsonValueKind.Object when v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String:
                return c.GetString();
            default:
                throw new ApbException($"{path}: {name} is {v.GetRawText()}; expected a token string or " +
                                       "{\"content\": \"...\"}. Fix or remove the field.");
        }
    }

    private static string? String(JsonElement root, string name, string path)
    {
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.String) return v.GetString();
        throw new ApbException($"{path}: {name} is {v.GetRawText()}; expected a string. Fix or remove the field.");
    }

    private static bool? Bool(JsonElement root, string name, string path, bool? nullValue)
    {
        if (!root.TryGetProperty(name, out var v)) return null;
        return v.ValueKind switch
        {
            JsonValueKind.Null => nullValue,
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new ApbException($"{path}: {name} is {v.GetRawText()}; expected true, false or null. Fix or remove the field."),
        };
    }

    // transformers writes the template to chat_template.jinja beside tokenizer_config.json (5.x: instead of into it).
    private static string? JinjaFileBeside(string configPath)
    {
        string jinja = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(configPath))!, "chat_template.jinja");
        return File.Exists(jinja) ? jinja : null;
    }

    // A string, or a list of {"name", "template"} of which "default" is the chat template.
    private static string? Template(JsonElement root, string path)
    {
        if (!root.TryGetProperty("chat_template", out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.String) return v.GetString();
        if (v.ValueKind == JsonValueKind.Array)
        {
            foreach (var entry in v.EnumerateArray())
                if (entry.ValueKind == JsonValueKind.Object
                    && entry.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String && n.GetString() == "default"
                    && entry.TryGetProperty("template", out var t) && t.ValueKind == JsonValueKind.String)
                    return t.GetString();
        }
        throw new ApbException($"{path}: chat_template is {v.ValueKind}; expected a template string or a list of " +
                               "{\"name\", \"template\"} with one named \"default\". Fix the field or remove it (plain prompts).");
    }
}
