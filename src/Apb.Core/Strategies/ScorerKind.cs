namespace Apb.Strategies;

/// <summary>How APB scores tokens for the passing block (<see cref="ScorerChoice"/> picks the default).</summary>
public enum ScorerKind
{
    /// <summary>
    /// Training-free: the key's similarity to the (GQA-group mean) query, post-RoPE (Spava), mixed with the key's novelty
    /// within its block, which keeps the later links of a chain (<see cref="Apb.QueryAwareScorer"/>).
    /// </summary>
    Query,
    /// <summary>
    /// Trained retaining heads (Locret) loaded from <see cref="StrategyOptions.RetainingHeadsPath"/>, mixed with the same
    /// novelty term (<see cref="Apb.NoveltyTerm"/>).
    /// </summary>
    Retaining,
    /// <summary>The query term alone, without the novelty term: the paper's training-free scorer, kept to compare against.</summary>
    QueryOnly,
    /// <summary>The retaining heads alone, without the novelty term: Locret's scorer, kept to compare against.</summary>
    RetainingOnly,
}
