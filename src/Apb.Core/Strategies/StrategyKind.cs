namespace Apb.Strategies;

/// <summary>How the context's attention is spread over ranks during prefill. Decode is the exact star phase for all.</summary>
public enum StrategyKind
{
    /// <summary>Exact attention on one rank.</summary>
    Full,
    /// <summary>Exact: K/V blocks passed around a ring of ranks, partial results merged by LSE.</summary>
    Ring,
    /// <summary>Ring with the zigzag layout (balanced causal work).</summary>
    Zigzag,
    /// <summary>Exact: all-to-all from sequence- to head-sharded q/k/v and back.</summary>
    Ulysses,
    /// <summary>Approximate: every block attends to the first block (anchor) and itself; no communication in prefill.</summary>
    Star,
    /// <summary>Approximate: anchor with the query plus compressed passing blocks from earlier ranks.</summary>
    Apb,
    /// <summary>
    /// APB on the zigzag layout: 2H chunks, rank r holding chunks r and 2H-1-r, each chunk passing l_p/2 rows, so every
    /// rank does about the same attention work (docs/apb-algorithm.md, section 2.6). Last in the enum: the value travels
    /// as an integer between the processes of a group.
    /// </summary>
    ApbBalanced,
    /// <summary>
    /// Not a layout: chosen per request among full, APB and the zigzag ring by context length, rank count and a cost
    /// model (<see cref="AutoStrategy"/>); a plan always names what was chosen.
    /// </summary>
    Auto,
}

public static class StrategyKinds
{
    /// <summary>The name the CLI takes and prints: "full", "zigzag", "apb-balanced".</summary>
    public static string Name(this StrategyKind k) => k == StrategyKind.ApbBalanced ? "apb-balanced" : k.ToString().ToLowerInvariant();

    /// <summary>APB in either layout: scores, passes, and takes APB's lengths and scorer.</summary>
    public static bool IsApb(this StrategyKind k) => k is StrategyKind.Apb or StrategyKind.ApbBalanced;

    /// <summary>APB, or auto, which may choose it: what loads APB's scorer and takes its lengths.</summary>
    public static bool MayRunApb(this StrategyKind k) => k.IsApb() || k == StrategyKind.Auto;
}
