namespace Apb.Strategies;

/// <summary>How APB scores tokens for the passing block.</summary>
public enum ScorerKind
{
    /// <summary>Training-free: similarity of each key to the (GQA-group mean) query, post-RoPE (Spava).</summary>
    Query,
    /// <summary>Trained retaining heads (Locret) loaded from <see cref="StrategyOptions.RetainingHeadsPath"/>.</summary>
    Retaining,
}
