namespace Apb.Strategies.Apb;

/// <summary>
/// APB's anchor and passing lengths by context length, from the paper's sweep (Llama-3-8B-1M, H = 8): 32K: 1K/0.5K,
/// 64K: 2K/1K, 128K: 4K/2K, 256K: 8K/4K, 512K and beyond: 8K/8K. That table is l_a = n/32 and l_p = n/64, each capped at
/// 8K. Below 32K the anchor scales down by the same rule, but the passing length stays at the table's smallest entry,
/// <see cref="MinPassing"/> (512): a short block holds as many facts as a long one (a needle is ~25 tokens whatever the
/// context), so n/64 rows cannot carry them (at 4K, 64 rows for a 1K block that may hold 3 needles). Lengths are
/// multiples of 128 (tile-friendly) once they reach 128, rounded down, and never exceed the block.
/// </summary>
/// <remarks>
/// Measured on the embedded model, 4 ranks, 20 samples per task (bench/results/apb-defaults-20261204): at 4K, l_p = n/64
/// = 64 left multi-value and multi-query 10 points under full attention, 512 within 4 and 5; at 4K and 16K the floor
/// raised APB's mean on 4 of the 5 seed-length pairs measured both ways. Where APB runs (bench/results/
/// long-context-20261204, section 4), n/128 to n/16 scored within a point of n/64 at 32K x4 and 64K x8 on the mean of
/// the 11 tasks; on the multi-key tasks alone at 64K x8 with 200 samples a task, 2048 (n/32) scored 4.3 ± 2.0 under
/// the default 896 (n/64 rounded down; bench/results/apb-multikey-gpu-20261205), so longer is not safer.
/// </remarks>
public static class ApbDefaults
{
    public const int MaxLength = 8 * 1024;
    /// <summary>The shortest default passing length: the paper's l_p at 32K, its shortest context.</summary>
    public const int MinPassing = 512;
    /// <summary>Context tokens a default anchor keeps besides the chat header and the query.</summary>
    public const int MinAnchorContext = 64;

    /// <summary>
    /// The anchor a request gets when none was given: the table's, grown to hold the chat header, the query and
    /// <see cref="MinAnchorContext"/> context tokens (the paper's l_a = n/32 is shorter than that at short lengths), and
    /// never longer than the block (for balanced APB, never longer than a chunk, half a block: every chunk's rows see the
    /// whole anchor). An anchor given explicitly is kept as it is (the plan refuses one that cannot hold the query).
    /// </summary>
    public static int Anchor(int contextLength, int ranks, int insertAt, int queryLength, bool balanced = false)
    {
        int anchor = For(contextLength, ranks).Anchor;
        if (anchor == 0 || ranks <= 1) return anchor;
        int room = Block(contextLength, balanced ? 2 * ranks : ranks);
        return Math.Min(Math.Max(anchor, insertAt + queryLength + MinAnchorContext), room);
    }

    /// <summary>
    /// How <see cref="For"/> arrived at its lengths for this context and rank count, in words (`apb inspect`). The
    /// anchor a request gets may still grow to hold its chat header and query (<see cref="Anchor"/>).
    /// </summary>
    public static string Why(int contextLength, int ranks)
    {
        int lb = Block(contextLength, ranks);
        string Rule(string name, int divisor, int floor)
        {
            var steps = new List<string>();
            int got = Length(contextLength, divisor, floor, lb, steps);
            return $"{name} {got} (n/{divisor} = {contextLength / divisor}" + (steps.Count > 0 ? $", {string.Join(", ", steps)}" : "") + ")";
        }
        return Rule("l_a", 32, 0) + "; " + Rule("l_p", 64, MinPassing) +
            ". n/32 and n/64 are the paper's table; on our model n/128 to n/16 scored within a point of n/64 at 32K and 64K";
    }

    public static (int Anchor, int Passing) For(int contextLength, int ranks)
    {
        int lb = Block(contextLength, ranks);
        return (Length(contextLength, 32, 0, lb, null), Length(contextLength, 64, MinPassing, lb, null));
    }

    /// <summary>A rank's block: the context split over the ranks, rounded up (the last rank's may be shorter).</summary>
    internal static int Block(int contextLength, int ranks) => (contextLength + Math.Max(ranks, 1) - 1) / Math.Max(ranks, 1);

    /// <summary>
    /// One length of the table: n / <paramref name="divisor"/>, capped at <see cref="MaxLength"/>, at least
    /// <paramref name="floor"/>, rounded down to a multiple of 128 once at least 128, never past the block; each step
    /// that changed it is added to <paramref name="why"/>.
    /// </summary>
    static int Length(int contextLength, int divisor, int floor, int lb, List<string>? why)
    {
        int x = contextLength / divisor;
        if (x > MaxLength) { x = MaxLength; why?.Add("capped at 8K"); }
        if (x < floor) { x = floor; why?.Add($"raised to {floor}, the shortest default: a short block holds as many facts as a long one"); }
        if (x >= 128 && x % 128 != 0) { x = x / 128 * 128; why?.Add("rounded down to a multiple of 128"); }
        if (x > lb) { x = lb; why?.Add($"cut to the block of {lb}"); }
        return x;
    }
}
