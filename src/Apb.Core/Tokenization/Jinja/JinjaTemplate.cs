namespace Apb.Tokenization.Jinja;

/// <summary>
/// A Jinja template in the subset Hugging Face chat templates use, parsed once and rendered many times; rendering is
/// thread-safe (each call has its own scopes). Parse and render errors are <see cref="TemplateException"/>s naming
/// the construct and the template line.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly IReadOnlyList<Node> _body;

    private JinjaTemplate(IReadOnlyList<Node> body) => _body = body;

    public static JinjaTemplate Parse(string source) => new(JinjaParser.Parse(source));

    /// <summary>The template's text for <paramref name="variables"/> (values: null, bool, long, double, string,
    /// List&lt;object?&gt;, OrderedDictionary&lt;string, object?&gt;).</summary>
    public string Render(IReadOnlyDictionary<string, object?> variables) => new JinjaEvaluator(variables).Render(_body);

    /// <summary>A request's JSON value as the template sees it (Python's json.loads).</summary>
    public static object? FromJson(System.Text.Json.JsonElement value) => JinjaJson.FromJson(value);
}
