namespace Apb;

/// <summary>
/// An error the user can act on: the message names the file, tensor or field, what was expected,
/// what was found and what to do. The CLI prints the message alone (no stack trace) and exits non-zero.
/// </summary>
public class ApbException : Exception
{
    public ApbException(string message) : base(message) { }
    public ApbException(string message, Exception inner) : base(message, inner) { }
}
