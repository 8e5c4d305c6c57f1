namespace Apb.Engine;

/// <summary>
/// The prompt has more than <see cref="MaxTokens"/> tokens; tokenization stopped there rather than count the rest of a
/// text that cannot fit. Callers say what the limit was (the model's context) and what to do.
/// </summary>
public sealed class PromptTooLongException(int maxTokens)
    : ApbException($"the prompt has more than {maxTokens} tokens (tokenization stopped there)")
{
    public int MaxTokens { get; } = maxTokens;
}
