namespace Apb.Engine;

/// <summary>How the next token is chosen. Temperature 0 means greedy (argmax, lowest id on ties).</summary>
public sealed record SamplingOptions
{
    public double Temperature { get; init; }
    public int TopK { get; init; }          // 0 = off
    public double TopP { get; init; } = 1;  // 1 = off
    public int? Seed { get; init; }
    public int MaxNewTokens { get; init; } = 64;

    public void Validate()
    {
        if (Temperature < 0 || double.IsNaN(Temperature)) throw new ApbException($"temperature must be >= 0 (0 = greedy), got {Temperature}");
        if (TopK < 0) throw new ApbException($"top-k must be >= 0 (0 = off), got {TopK}");
        if (!(TopP > 0 && TopP <= 1)) throw new ApbException($"top-p must be in (0, 1], got {TopP}");
        if (MaxNewTokens < 0) throw new ApbException($"max new tokens must be >= 0, got {MaxNewTokens}");
    }
}
