namespace Apb.Serving;

/// <summary>How many tokens a request may generate, checked against the model's context window.</summary>
public static class TokenBudget
{
    /// <summary>
    /// The max new tokens for a prompt of <paramref name="promptTokens"/>: <paramref name="requested"/> when given
    /// (an error when it does not fit, as OpenAI does), else <paramref name="defaultMax"/> trimmed to what fits.
    /// </summary>
    public static int Resolve(int maxPositions, int promptTokens, int? requested, int defaultMax, string param = "max_tokens",
        string promptParam = "messages")
    {
        if (promptTokens == 0)
            throw new InvalidRequestException("the prompt is empty after tokenization; give some text", promptParam);
        if (promptTokens >= maxPositions)
            throw new InvalidRequestException(
                $"This model's maximum context length is {maxPositions} tokens, but the prompt has {promptTokens} tokens " +
                "and at least one token must be generated. Shorten the prompt.", promptParam, "context_length_exceeded");
        if (requested is int n)
        {
            if (n <= 0) throw new InvalidRequestException($"'{param}' must be at least 1, got {n}", param, "invalid_value");
            if (n > maxPositions)
                throw new InvalidRequestException(
                    $"'{param}' is {n}, more than the model's whole context of {maxPositions} tokens; ask for at most " +
                    $"{maxPositions - promptTokens} with this prompt", param, "invalid_value");
            if (promptTokens + n > maxPositions)
                throw new InvalidRequestException(
                    $"This model's maximum context length is {maxPositions} tokens. However, you requested " +
                    $"{promptTokens + n} tokens ({promptTokens} in the prompt, {n} for the completion). Reduce the prompt " +
                    $"or '{param}' (at most {maxPositions - promptTokens} with this prompt).", param, "context_length_exceeded");
            return n;
        }
        return Math.Min(defaultMax, maxPositions - promptTokens);
    }
}
