namespace Apb.Strategies.Apb;

/// <summary>
/// APB's anchor and passing lengths by context length, from the paper's sweep (Llama-3-8B-1M, H = 8): 32K: 1K/0.5K,
/// 64K: 2K/1K, 128K: 4K/2K, 256K: 8K/4K, 512K and beyond: 8K/8K. That table is l_a = n/32 and l_p = n/64, each capped at
/// 8K, so shorter contexts scale down by the same rule. Lengths are multiples of 128 (tile-friendly) once they reach 128,
/// rounded down, and never exceed the block. Rounding down halves l_p for a context just under a power of two (a 16K
/// sample of 16,300 tokens gets 128, not 256); on our model that cost nothing measurable at 16K (RULER, 20 samples per
/// task: means 85.3 vs 85.4 on seed 1, 86.8 vs 86.1 on seed 0 for 128 vs 256; bench/results/scorer-tune-20261203).
/// </summary>
public static class ApbDefaults
{
    public const int MaxLength = 8 * 1024;
    /// <summary>Context tokens a default anchor keeps besides the chat header and the query.</summary>
    public const int MinAnchorContext = 64;

    /// <summary>
    /// The anchor a request gets when none was given: the table's, grown to hold the chat header, the query and
    /// <see cref="MinAnchorContext"/> context tokens (the paper's l_a = n/32 is shorter than that at short lengths), and
    /// never longer than the block. An anchor given explicitly is kept as it is (the plan refuses one that cannot hold the query).
    /// </summary>
    public static int Anchor(int contextLength, int ranks, int insertAt, int queryLength)
    {
        int anchor = For(contextLength, ranks).Anchor;
        if (anchor == 0 || ranks <= 1) return anchor;
        int lb = (contextLength + ranks - 1) / ranks;
        return Math.Min(Math.Max(anchor, insertAt + queryLength + MinAnchorContext), lb);
    }

    public static (int Anchor, int Passing) For(int contextLength, int ranks)
    {
        int lb = (contextLength + Math.Max(ranks, 1) - 1) / Math.Max(ranks, 1);
        int Round(int x) => Math.Min(x >= 128 ? x / 128 * 128 : x, lb);
        return (Round(Math.Min(contextLength / 32, MaxLength)), Round(Math.Min(contextLength / 64, MaxLength)));
    }
}
