
namespace Apb.Backends.Cuda;

/// <summary>
/// Host side of the split-KV decode attention (Kernels/decode.cu): a few query rows against a long cache, the keys cut
/// into splits so that every SM streams a share of the cache, then one merge by LSE. <see cref="Attention"/> hands a call
/// here when <see cref="ChooseAttentionKernel"/> picks <see cref="AttentionKernel.SplitKv"/>; the kernel's shared-memory
/// layout is mirrored by <see cref="DecodeSharedBytes"/>.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    const string DecodeFile = "decode.cu";

    /// <summary>The most query rows the decode kernel takes: one decode step up to a handful of drafted tokens.</summary>
    public const int DecodeMaxQueryRows = 16;

    const int DecodeTile = 64, DecodeRows = 64, DecodeThreads = 128; // DEC_TILE, DEC_ROWS, DEC_THREADS in decode.cu

    ulong _decodeScratch; // partial outputs and LSEs of the splits, fp32, grown as needed
    long _decodeScratchBytes;

    /// <summary>Bytes of dynamic shared memory for R = min(64, Tq x group) pairs: q, one K/V tile, scores, output, 3 per-pair floats.</summary>
    static uint DecodeSharedBytes(int pairs, int d)
    {
        int r = Math.Min(pairs, DecodeRows), w = d / 2 + 1;
        return (uint)(4 * (r * w + DecodeTile * w + r * (DecodeTile + 1) + r * d + 3 * r));
    }

    /// <summary>
    /// How many splits of whole 64-key tiles: enough blocks for about four per SM over (KV heads x row groups), never
    /// more than there are tiles. Returns (splits, tiles per split).
    /// </summary>
    (int Splits, int TilesPerSplit) DecodeSplits(int tk, int blocksPerSplit)
    {
        int tiles = Math.Max(1, (tk + DecodeTile - 1) / DecodeTile);
        int want = Math.Max(1, 4 * Context.Device.Multiprocessors / Math.Max(1, blocksPerSplit));
        int per = (tiles + Math.Min(want, tiles) - 1) / Math.Min(want, tiles);
        return ((tiles + per - 1) / per, per);
    }

    /// <summary>
    /// The split-KV decode attention: same contract as <see cref="Attention"/>, which validated the shapes and chose this
    /// kernel (<see cref="ChooseAttentionKernel"/>: at most <see cref="DecodeMaxQueryRows"/> rows, head dim 64 or 128,
    /// 16-byte aligned rows).
    /// </summary>
    void DecodeAttention(CudaTensor qs, CudaTensor ks, CudaTensor vs, int heads, int kvHeads, AttentionMask mask,
                         CudaTensor o, CudaTensor? l)
    {
        int tq = qs.Rows, tk = ks.Rows, d = qs.Cols / heads;

        int group = heads / kvHeads, pairs = tq * group, rowBlocks = (pairs + DecodeRows - 1) / DecodeRows;
        var (splits, perSplit) = DecodeSplits(tk, kvHeads * rowBlocks);
        long rowsOut = (long)tq * heads;
        long bytes = rowsOut * splits * (d + 1) * 4L;
        ulong partO = Scratch(ref _decodeScratch, ref _decodeScratchBytes, bytes, 1L << 20, "decode attention partials");
        ulong partLse = partO + (ulong)(rowsOut * splits * d * 4L);

        ulong qp = qs.Ptr, kp = ks.Ptr, vp = vs.Ptr, op = o.Ptr;
        long qStride = qs.Cols, kStride = ks.Cols, oStride = o.Cols;
        float scale = 1f / MathF.Sqrt(d);
        int causal = mask == AttentionMask.Causal ? 1 : 0;
        string fn = d == 64 ? "apb_decode_split_d64" : "apb_decode_split_d128";
        uint smem = DecodeSharedBytes(pairs, d);
        // The limit goes to what any call may need (the widest row block at d = 128): smem varies from call to call.
        nint f = KernelWithSmem(DecodeFile, fn, DecodeSharedBytes(DecodeRows, 128));
        void** sa = stackalloc void*[] { &qp, &kp, &vp, &partO, &partLse, &tq, &tk, &heads, &kvHeads, &qStride, &kStride, &scale, &causal, &perSplit };
        Context.Launch(f, fn, ((uint)splits, (uint)kvHeads, (uint)rowBlocks), DecodeThreads, smem, sa);

        ulong lp = l?.Ptr ?? 0;
        int lseF32 = l?.DType == CudaDType.F32 ? 1 : 0;
        void** ma = stackalloc void*[] { &partO, &partLse, &op, &oStride, &lp, &lseF32, &heads, &d, &splits };
        Context.Launch(Context.Function(DecodeFile, "apb_decode_merge"), "apb_decode_merge", ((uint)rowsOut, 1, 1), 128, 0, ma);
    }
}
