namespace Apb.Serving;

/// <summary>
/// A request the caller has to change: <see cref="Param"/> names the offending field the way OpenAI's API does
/// ("messages[2].role", "max_tokens"), <see cref="Code"/> is OpenAI's machine-readable code when one exists
/// ("context_length_exceeded", "model_not_found"), <see cref="Status"/> the HTTP status a server answers with.
/// </summary>
public sealed class InvalidRequestException(string message, string? param = null, string? code = null, int status = 400)
    : ApbException(message)
{
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public int Status { get; } = status;
}
