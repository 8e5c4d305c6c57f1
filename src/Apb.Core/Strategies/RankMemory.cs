using Apb.Backends;
using Apb.Backends.Cuda;
using Apb.Checkpoints;
using Apb.Strategies.Apb;

namespace Apb.Strategies;

/// <summary>
/// Device memory one rank needs for a prefill on the CUDA backend (bf16 weights and activations): the arithmetic
/// `apb inspect --context` prints and `apb bench prefill` refuses a case by before running it. Every strategy keeps the
/// whole model on every rank (they split the sequence, not the weights), so a rank needs <see cref="WeightBytes"/> plus
/// <see cref="BeyondWeights"/> for its share of the sequence.
/// </summary>
public static class RankMemory
{
    /// <summary>An H200's memory as NVIDIA states it, 141 GB.</summary>
    public const long H200Bytes = 141_000_000_000;

    /// <summary>The share of a device's free memory a plan may use: the rest is the allocator's and the libraries' slack.</summary>
    public const double UsableFraction = 0.95;

    public static bool Fits(long bytes, long deviceBytes) => bytes <= deviceBytes * UsableFraction;

    /// <summary>The weights as the CUDA backend holds them: every tensor in bf16, a tied output projection once.</summary>
    public static long WeightBytes(ModelConfig c) => c.ParameterCount * 2;

    /// <summary>K and V of every layer for one token: bf16, or fp8 rows with their scales (--kv-cache-dtype fp8).</summary>
    public static long KvBytesPerToken(ModelConfig c, KvCacheDType kvDType = KvCacheDType.Auto) =>
        2L * c.NumHiddenLayers * KvCacheDTypes.DeviceRowBytes(c.KvDim, kvDType);

    /// <summary>
    /// What one rank needs beyond the weights for n context and q query tokens, generously: the model's per-call
    /// workspace for its local rows, the KV caches it keeps, the attention's key-side buffers three times over (received
    /// blocks, LSE merges, outputs), the attention's chunk state, the query's logits and 1 GiB for the libraries' workspaces.
    /// </summary>
    /// <param name="passingBudget">APB's passing budget as given (null: the default plan's)</param>
    public static long BeyondWeights(ModelConfig c, StrategyKind s, int n, int q, int ranks, KvCacheDType kvDType = KvCacheDType.Auto,
        int? passingBudget = null)
    {
        long lb = ApbDefaults.Block(n, ranks);
        // The anchor as the planner grows it (no chat header here: a header of h tokens adds h rows to it).
        long anchor = ApbDefaults.Anchor(n, ranks, insertAt: 0, q, s == StrategyKind.ApbBalanced);
        long passing = s.IsApb() ? MostPassingRows(s, n, q, ranks, passingBudget) : 0;
        long rows = s switch
        {
            StrategyKind.Full => n + q,
            StrategyKind.Star => 2 * lb,
            StrategyKind.Apb or StrategyKind.ApbBalanced => lb + anchor,
            _ => lb,
        };
        long keys = s switch
        {
            StrategyKind.Full or StrategyKind.Ulysses => n + q,
            StrategyKind.Apb => rows + passing,
            // Two key buffers, [passing; anchor; chunk] per chunk: the anchor twice, both chunks' passing rows.
            StrategyKind.ApbBalanced => rows + anchor + passing,
            StrategyKind.Star => rows,
            _ => 2 * lb,
        };
        long workspace = rows * (3L * c.HiddenSize + 2L * c.QDim + 2L * c.KvDim + 2L * c.IntermediateSize) * 2;
        // K and V of every layer, reserved once (KvCache.Reserve). Against bench/results/prefill-20261128-152251 (8B
        // shape, 2 H200, 128K; peaks there include the ~15 GiB of weights): this estimate is ~18 GiB for APB against a
        // measured 15.2 beyond the weights, ~26 for Star against 20.7, ~34 for full against 28.9.
        long cache = (s == StrategyKind.Full ? n + q + 64 : lb + q) * KvBytesPerToken(c, kvDType);
        long attention = 3 * keys * (c.QDim + 2L * c.KvDim) * 2 + 2 * rows * c.NumAttentionHeads * 4L;
        // The Hopper attention's carried state, capped by its budget, when a non-causal call's keys go in chunks
        // (CudaBackend.AttentionChunkKeys): the ring strategies' off-diagonal blocks, of at most lb keys.
        long chunkState = s is (StrategyKind.Ring or StrategyKind.Zigzag) && lb > CudaBackend.DefaultAttentionChunkKeys
            ? Math.Min(CudaBackend.DefaultAttentionStateBudget, rows * c.NumAttentionHeads * CudaBackend.AttentionStateBytesPerRowHead(c.HeadDim))
            : 0;
        long logits = (long)q * c.VocabSize * 4;
        return workspace + cache + attention + chunkState + logits + (1L << 30);
    }

    /// <summary>
    /// The most passed rows one rank holds under APB's default plan (its lengths, and its passing budget unless one is
    /// given): <see cref="SequencePlan.MostPassingRows"/>. Without a plan (fewer context tokens than ranks) the
    /// budget-free bound, H l_p.
    /// </summary>
    static long MostPassingRows(StrategyKind s, int n, int q, int ranks, int? passingBudget)
    {
        if (n < ranks || ranks < 2) return (long)Math.Max(ranks, 1) * ApbDefaults.For(n, ranks).Passing;
        // The lengths do not depend on the scorer; the retaining one skips the query-aware scorer's check for a query.
        var plan = SequencePlanner.Plan(new StrategyOptions { Strategy = s, Ranks = ranks, FallbackBelow = 0, Scorer = ScorerKind.Retaining, PassingBudget = passingBudget }, n, q, 0).Plan!;
        return plan.MostPassingRows;
    }

    /// <summary>Weights plus <see cref="BeyondWeights"/>: one rank's device memory for the prefill.</summary>
    public static long PerRank(ModelConfig c, StrategyKind s, int n, int q, int ranks, KvCacheDType kvDType = KvCacheDType.Auto) =>
        WeightBytes(c) + BeyondWeights(c, s, n, q, ranks, kvDType);

    /// <summary>Why <paramref name="s"/> cannot run this model on <paramref name="ranks"/> ranks at all, or null.</summary>
    public static string? Unrunnable(ModelConfig c, StrategyKind s, int ranks) =>
        s == StrategyKind.Full ? (ranks == 1 ? null : "full attention runs on one rank")
        : StrategyOptions.SequenceParallelProblem(c) is { } model ? model
        : s == StrategyKind.Ulysses ? StrategyOptions.UlyssesProblem(c.NumKeyValueHeads, ranks)
        : null;
}
