namespace Apb.Tokenization.Jinja;

/// <summary>
/// A template that cannot be parsed or rendered: <see cref="Line"/> is the template line; the caller adds the file.
/// </summary>
public sealed class TemplateException(int line, string problem) : ApbException($"line {line}: {problem}")
{
    public int Line => line;
    public string Problem => problem;
}
