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
}
