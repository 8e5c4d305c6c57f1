namespace Apb.Backends;

/// <summary>
/// QK8, the prefill attention with S = Q K^T in FP8 E4M3 (--prefill-attention fp8; docs/notes/fp8-attention.md): which
/// calls take it and how q and k are rounded, written once for both backends. The CUDA backend's Hopper kernel computes
/// S from e4m3 codes; the CPU backend rounds q and k to the values those codes stand for and computes in f32, so the two
/// give the same attention up to the products' own rounding (the GPU tests hold the kernel to this reference).
/// </summary>
public static class Qk8
{
    /// <summary>
    /// Calls with fewer query rows take the GPU's mma.sync kernel in bf16 (CudaBackend.HopperMinRows): decode steps and
    /// short chunks are never rounded.
    /// </summary>
    public const int MinQueryRows = 64;

    /// <summary>Keys per k scale: the Hopper kernel's key tile.</summary>
    public const int KeyTile = 128;

    /// <summary>
    /// Whether a call of <paramref name="queryRows"/> rows at head dim <paramref name="headDim"/> takes QK8: the Hopper
    /// kernel's own reach (head dims 64 and 128, no sliding window), in one pass or in chunks of keys alike (on the GPU
    /// APB_ATTENTION_QK_FP8_CHUNKS=0 keeps the chunked calls bf16).
    /// </summary>
    public static bool Applies(int queryRows, int headDim, int window) => queryRows >= MinQueryRows && headDim is 64 or 128 && window == 0;

    /// <summary>
    /// Refuses QK8 for a model whose head dim it does not cover: its every call would run bf16 under an fp8 label.
    /// </summary>
    public static void RequireHeadDim(int headDim)
    {
        if (headDim is not (64 or 128))
            throw new ApbException($"--prefill-attention fp8 covers head dims 64 and 128 (the Hopper kernel's); this model's is {headDim}: leave the flag out");
    }

    /// <summary>q rounded in place, rows of heads x <paramref name="headDim"/>: one scale per (row, head), the head's largest magnitude to 448.</summary>
    public static void RoundQueries(Span<float> q, int headDim) => Fp8E4M3.RoundGroups(q, headDim);

    /// <summary>
    /// k rounded in place, rows of <paramref name="kvHeads"/> x <paramref name="headDim"/>: one scale per
    /// <see cref="KeyTile"/> keys of one KV head (the tile's largest magnitude to 448), which the kernel folds into the
    /// scores without a multiply per key.
    /// </summary>
    public static void RoundKeys(Span<float> k, int kvHeads, int headDim)
    {
        int cols = kvHeads * headDim, keys = k.Length / cols;
        for (int t0 = 0; t0 < keys; t0 += KeyTile)
        {
            int t1 = Math.Min(keys, t0 + KeyTile);
            for (int h = 0; h < kvHeads; h++)
            {
                float amax = 0;
                for (int j = t0; j < t1; j++) amax = Fp8E4M3.AbsMax(k.Slice(j * cols + h * headDim, headDim), amax);
                float s = Fp8E4M3.ScaleOf(amax);   // one scale for the whole tile
                for (int j = t0; j < t1; j++) Fp8E4M3.RoundScaled(k.Slice(j * cols + h * headDim, headDim), s);
            }
        }
    }

    /// <summary>
    /// The backends' default: APB_ATTENTION_QK_FP8=1, the study scripts' switch; --prefill-attention overrides it either
    /// way.
    /// </summary>
    public static bool EnvironmentDefault => Environment.GetEnvironmentVariable("APB_ATTENTION_QK_FP8") == "1";

    /// <summary>What the lines that describe a run (generate, the serve banner, bench prefill's header) say when QK8 is on.</summary>
    public const string Label = "fp8 prefill attention (Q K^T in e4m3)";
}
