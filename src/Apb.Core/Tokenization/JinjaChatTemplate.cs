using Apb.Tokenization.Jinja;

namespace Apb.Tokenization;

/// <summary>
/// A model's own Jinja chat template, rendered as transformers' apply_chat_template does: variables messages (a list of
/// {"role", "content"}), add_generation_prompt, tools and documents (None), the special tokens tokenizer_config.json
/// sets (bos_token, eos_token, ...), and the request's template arguments.
/// </summary>
public sealed class JinjaChatTemplate : ChatTemplate
{
    private static readonly string[] Reserved = ["messages", "add_generation_prompt", "tools", "documents"];

    private readonly JinjaTemplate _template;
    private readonly IReadOnlyDictionary<string, object?> _specialTokens;
    private readonly IReadOnlyDictionary<string, object?> _arguments;
    private readonly string _source;

    internal JinjaChatTemplate(JinjaTemplate template, IReadOnlyDictionary<string, object?> specialTokens,
        IReadOnlyDictionary<string, object?> arguments, string source)
    {
        _template = template;
        _specialTokens = specialTokens;
        _arguments = arguments;
        _source = source;
    }

    public override string Name => "jinja";

    /// <summary>The file the template came from.</summary>
    public string Source => _source;

    /// <summary>
    /// Template arguments from JSON (vLLM's chat_template_kwargs): an object whose values become template values as
    /// Python's json.loads makes them. <paramref name="what"/> names the field or flag in the error.
    /// </summary>
    public static IReadOnlyDictionary<string, object?> ArgumentsFromJson(System.Text.Json.JsonElement value, string what)
    {
        if (value.ValueKind != System.Text.Json.JsonValueKind.Object)
            throw new ApbException($"{what} must be a JSON object of template arguments, e.g. {{\"enable_thinking\": false}}; " +
                                   $"got {value.ValueKind.ToString().ToLowerInvariant()}.");
        var arguments = new Dictionary<string, object?>();
        foreach (var p in value.EnumerateObject()) arguments[p.Name] = JinjaTemplate.FromJson(p.Value);
        return arguments;
    }

    public override ChatTemplate WithArguments(IReadOnlyDictionary<string, object?> arguments)
    {
        foreach (string name in Reserved)
            if (arguments.ContainsKey(name))
                throw new ApbException($"chat template arguments may not set '{name}' (it comes from the request itself); " +
                                       "remove it from chat_template_kwargs.");
        var merged = new Dictionary<string, object?>(_arguments);
        foreach (var (k, v) in arguments) merged[k] = v;
        return new JinjaChatTemplate(_template, _specialTokens, merged, _source);
    }

    public override string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var variables = new Dictionary<string, object?>(_specialTokens);
        foreach (var (k, v) in _arguments) variables[k] = v;
        variables["messages"] = messages.Select(m => (object?)new OrderedDictionary<string, object?>
        {
            ["role"] = m.Role,
            ["content"] = m.Content,
        }).ToList();
        variables["add_generation_prompt"] = addGenerationPrompt;
        variables["tools"] = null;
        variables["documents"] = null;
        try
        {
            return _template.Render(variables);
        }
        catch (TemplateException e)
        {
            throw new ApbException($"{_source}: chat template {e.Message}", e);
        }
    }
}
