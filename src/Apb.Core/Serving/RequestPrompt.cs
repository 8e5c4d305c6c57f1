using Apb.Engine;

namespace Apb.Serving;

/// <summary>
/// A request's prompt, tokenized and checked before the request takes a run slot: tokenization stops once the prompt
/// cannot fit the context (a huge body costs work in proportion to the context, not to its size), and a prompt the
/// model's strategy cannot run is refused here, as a 400 naming <c>param</c>, rather than failing mid-generation.
/// </summary>
public static class RequestPrompt
{
    /// <param name="tokenize">builds the prompt with at most the given number of tokens (a PromptTokens builder)</param>
    public static PromptTokens Build(ServedModel model, Func<int, PromptTokens> tokenize, string param)
    {
        PromptTokens prompt;
        try { prompt = tokenize(model.MaxPositions); }
        catch (PromptTooLongException)
        {
            throw new InvalidRequestException(
                $"This model's maximum context length is {model.MaxPositions} tokens, but the prompt has more than " +
                $"{model.MaxPositions} tokens (counting stopped there). Shorten the prompt.", param, "context_length_exceeded");
        }
        catch (ApbException e) when (e is not InvalidRequestException) { throw new InvalidRequestException(e.Message, param); }
        if (model.CheckPrompt is { } check)
        {
            try { check(prompt); }
            catch (ApbException e) when (e is not InvalidRequestException)
            {
                throw new InvalidRequestException(
                    $"This server's strategy cannot run this prompt ({prompt.Context.Count} context + {prompt.Query.Count} query " +
                    $"tokens): {e.Message}. Change the prompt, or the server's --strategy/--ranks/--anchor.", param, "invalid_prompt");
            }
        }
        return prompt;
    }
}
