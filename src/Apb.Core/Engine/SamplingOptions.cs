namespace Apb.Engine;

/// <summary>
/// How the next token is chosen. Temperature 0 means greedy (argmax, lowest id on ties). The penalties and the bias
/// change the logits before temperature, top-k and top-p, as OpenAI defines them: a token's logit gets
/// <c>- count * FrequencyPenalty - (count > 0 ? PresencePenalty : 0) + LogitBias[token]</c>, where count is how often
/// this generation has already picked it (the prompt does not count).
/// </summary>
public sealed record SamplingOptions
{
    public const double MaxPenalty = 2, MaxBias = 100;
    public const int MaxTopLogprobs = 20;

    public double Temperature { get; init; }
    public int TopK { get; init; }          // 0 = off
    public double TopP { get; init; } = 1;  // 1 = off
    public int? Seed { get; init; }
    public int MaxNewTokens { get; init; } = 64;
    /// <summary>Lowers a token's logit by this much per time it was picked (-2..2; 0 = off).</summary>
    public double FrequencyPenalty { get; init; }
    /// <summary>Lowers a token's logit by this much once it was picked at all (-2..2; 0 = off).</summary>
    public double PresencePenalty { get; init; }
    /// <summary>Added to the logits of these token ids (-100..100: -100 bans a token, 100 forces it); null = none.</summary>
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }
    /// <summary>
    /// Report each picked token's log-probability and this many most likely alternatives (0..20); null = no logprobs
    /// (nothing is computed). They are the model's own: log-softmax of its logits before penalties, bias and temperature.
    /// </summary>
    public int? Logprobs { get; init; }

    /// <summary>True when the logits must be changed before sampling (penalties or bias): the sampler copies them then.</summary>
    public bool AdjustsLogits => FrequencyPenalty != 0 || PresencePenalty != 0 || LogitBias is { Count: > 0 };

    /// <summary>
    /// True when the next token is all a step must give back: the plain argmax (temperature 0, nothing adjusts the
    /// logits) and no logprobs. A serving step of such requests has the device pick the tokens (IBackend.ArgMaxRows).
    /// </summary>
    public bool TokenOnly => Temperature == 0 && !AdjustsLogits && Logprobs is null;

    public void Validate()
    {
        if (Temperature < 0 || double.IsNaN(Temperature)) throw new ApbException($"temperature must be >= 0 (0 = greedy), got {Temperature}");
        if (TopK < 0) throw new ApbException($"top-k must be >= 0 (0 = off), got {TopK}");
        if (!(TopP > 0 && TopP <= 1)) throw new ApbException($"top-p must be in (0, 1], got {TopP}");
        if (MaxNewTokens < 0) throw new ApbException($"max new tokens must be >= 0, got {MaxNewTokens}");
        if (!(Math.Abs(FrequencyPenalty) <= MaxPenalty)) throw new ApbException($"frequency penalty must be in [-2, 2], got {FrequencyPenalty}");
        if (!(Math.Abs(PresencePenalty) <= MaxPenalty)) throw new ApbException($"presence penalty must be in [-2, 2], got {PresencePenalty}");
        if (LogitBias != null)
            foreach (var (token, bias) in LogitBias)
            {
                if (token < 0) throw new ApbException($"logit bias names token id {token}; token ids are 0 or more");
                if (!(Math.Abs(bias) <= MaxBias)) throw new ApbException($"logit bias of token {token} must be in [-100, 100], got {bias}");
            }
        if (Logprobs is < 0 or > MaxTopLogprobs) throw new ApbException($"top logprobs must be 0..{MaxTopLogprobs}, got {Logprobs}");
    }
}
