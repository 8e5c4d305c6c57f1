namespace Apb.Strategies.Apb;

/// <summary>
/// APB's anchor and passing lengths by context length. The anchor is the paper's (its sweep on Llama-3-8B-1M, H = 8:
/// 32K: 1K, 64K: 2K, 128K: 4K, 256K and beyond: 8K, i.e. l_a = n/32 capped at 8K). The passing length is ours: n/128
/// capped at 8K and at least <see cref="MinPassing"/> (512): 32K and 64K 512, 128K 1K, 256K 2K, 512K 4K, 1M and beyond
/// 8K. That is half the paper's n/64 from 64K up (its table: 32K 0.5K, 64K 1K, 128K 2K, 256K 4K, 512K 8K), because
/// on our model at 64K n/128 scored above n/64 on 8 ranks and level on 4 (remarks). Past 64K neither is measured on
/// our model (it does not hold 128K): the rule carries our ratio on rather than switching to the paper's at a length,
/// and `--passing` sets any length. Below 64K the floor matters: a short block holds as many facts as a long one (a
/// needle is ~25 tokens whatever the context), so n/128 rows cannot carry them (at 4K, 32 rows for a 1K block that may
/// hold 3 needles). Lengths are multiples of 128 (tile-friendly) once they reach 128, rounded down, and never exceed
/// the block.
/// </summary>
/// <remarks>
/// Measured on the embedded model, 4 ranks, 20 samples per task (bench/results/apb-defaults-20261204): at 4K, l_p = 64
/// left multi-value and multi-query 10 points under full attention, 512 within 4 and 5; at 4K and 16K the floor raised
/// APB's mean on 4 of the 5 seed-length pairs measured both ways. At 64K (bench/results/apb-passing-gpu-20261205, one
/// H100, the 11 RULER tasks, 60 samples a task, paired): 8 ranks, l_p 512 against the paper's 896, +1.6 ± 0.9 on seed
/// 0's samples and +1.1 ± 1.0 on seed 1's; 4 ranks, 512 against 1024, +0.1 ± 0.5; on the multi-key tasks alone at 8
/// ranks (200 samples a task) +1.8 ± 1.7, while 2048 scored 4.3 ± 2.0 under 896: longer is not safer. Passing nothing
/// in layer 0 (`--passing-from-layer 1`) cost 1.1 to 2.6 points on the mean, vt 20 to 26, in the same runs. The same
/// rule helps the balanced layout at 64K: +1.4 ± 1.1 on 8 ranks, +0.7 ± 0.7 on 4
/// (bench/results/session26-gpu-20261205). At 32K the floor holds l_p at 512 where n/128 is 256: 256 was +0.6 ± 0.9
/// and +0.7 ± 1.0 on 8 ranks (seeds 0 and 1; +0.7 ± 0.7 pooled) and 0.0 ± 0.6 on 4 (same folder), inside the noise
/// or at its edge, so the floor stayed (a floor by block size would give 4K on 4 ranks the 64 rows that lost 10 points).
/// The passing budget (<see cref="Budget"/>, docs/apb-algorithm.md 2.8) is twice l_p. On run 12 of the embedded model
/// (bench/results/apb-passing-budget-20261206, one H100, paired with the budget-free runs on the same samples), at 64K on
/// 8 ranks (B 1024): multi-key +2.2 ± 1.3 (200 samples a task; level with Star, 0.0 ± 1.7, from -2.2 ± 1.9), the whole
/// gain where the needle lies in ranks 4-7 (+5.9), the 11 tasks +0.5 ± 0.7 over seeds 0 and 1 (multi-value -1.5 ± 1.2,
/// multi-query -1.7 ± 1.4, multi-key +4 to +5); at 32K on 4 ranks B 512 (= l_p there) +0.1 ± 0.9 (multi-key +1.0 ± 1.2
/// on 200 a task) and the default 1024 +0.1 ± 0.6 (multi-key +0.3 ± 0.8; bench/results/apb-long-context-20261206,
/// paired.txt); balanced APB at 64K x8 +3.7 ± 1.7 on multi-key. B 512 and 2048 at 64K x8 scored +2.3 ± 1.7 and
/// +1.2 ± 1.0 on multi-key: fewer passed rows for the late ranks help, some is what multi-value lives on. It also shortens the last
/// rank's work (64K x8: 5.48 against 5.84 TFLOP a layer, `apb inspect --context 64k --ranks 8`, then with
/// `--passing-budget 0`).
/// </remarks>
public static class ApbDefaults
{
    public const int MaxLength = 8 * 1024;
    /// <summary>l_a = n / this (the paper's table).</summary>
    public const int AnchorDivisor = 32;
    /// <summary>l_p = n / this (half the paper's n/64; the class comment says why).</summary>
    public const int PassingDivisor = 128;
    /// <summary>The shortest default passing length: the paper's l_p at 32K, its shortest context.</summary>
    public const int MinPassing = 512;
    /// <summary>Context tokens a default anchor keeps besides the chat header and the query.</summary>
    public const int MinAnchorContext = 64;
    /// <summary>The default passing budget is this many times l_p (the remarks say why).</summary>
    public const int BudgetFactor = 2;

    /// <summary>
    /// The passing budget a plan gets when none was given: <see cref="BudgetFactor"/> x l_p (0 when nothing is passed).
    /// Ranks 1 and 2 read what they read without it; a later rank reads about 2 l_p instead of r l_p.
    /// </summary>
    public static int Budget(int passing) => BudgetFactor * passing;

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
        return Rule("l_a", AnchorDivisor, 0) + "; " + Rule("l_p", PassingDivisor, MinPassing) +
            $"; passing budget {Budget(For(contextLength, ranks).Passing)} ({BudgetFactor} l_p)" +
            $". n/{AnchorDivisor} is the paper's anchor; n/{PassingDivisor} is half its passing length, which on our model scored above n/64 at 64K on 8 ranks and level on 4; " +
            "the budget (ours) keeps a late rank's passed rows near 2 l_p, which scored level or better on the mean and +2 on multi-key at 64K on 8 ranks";
    }

    public static (int Anchor, int Passing) For(int contextLength, int ranks)
    {
        int lb = Block(contextLength, ranks);
        return (Length(contextLength, AnchorDivisor, 0, lb, null), Length(contextLength, PassingDivisor, MinPassing, lb, null));
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
