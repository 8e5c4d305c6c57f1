
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

    ulong _batchTable;       // the batch's K/V addresses and lengths, uploaded once per call
    long _batchTableBytes;

    /// <summary>
    /// One decode step of B sequences in one launch (<see cref="IBackend.DecodeAttention"/>): the split-KV kernel with
    /// blockIdx.z picking the sequence, whose cache it finds in a table of addresses and lengths uploaded with the call.
    /// Falls back to a call per sequence where the kernel does not apply (head dim, alignment, a GQA group over 64).
    /// </summary>
    public void DecodeAttention(Tensor q, IReadOnlyList<Tensor> keys, IReadOnlyList<Tensor> values, int heads, int kvHeads, Tensor output)
    {
        var qs = Bf16(q, "decode attention"); var o = Bf16(output, "decode attention");
        int b = qs.Rows, d = heads > 0 ? qs.Cols / heads : 0;
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0 || qs.Cols != heads * d || keys.Count != b || values.Count != b ||
            o.Rows != b || o.Cols != qs.Cols)
            throw new ArgumentException($"decode attention: q {qs} ({heads}/{kvHeads} heads), {keys.Count} key and {values.Count} value tensors, out {o}");
        if (b == 0) return;
        var ks = new CudaTensor[b]; var vs = new CudaTensor[b];
        int maxLen = 0;
        for (int i = 0; i < b; i++)
        {
            ks[i] = Bf16(keys[i], "decode attention"); vs[i] = Bf16(values[i], "decode attention");
            if (ks[i].Cols != kvHeads * d || vs[i].Cols != ks[i].Cols || vs[i].Rows != ks[i].Rows || ks[i].Rows < 1)
                throw new ArgumentException($"decode attention: sequence {i}: keys {ks[i]}, values {vs[i]} for {kvHeads} KV heads of {d}");
            maxLen = Math.Max(maxLen, ks[i].Rows);
        }
        bool aligned = ks.All(k => k.Ptr % 16 == 0) && vs.All(v => v.Ptr % 16 == 0) && qs.Ptr % 16 == 0 && qs.Cols % 8 == 0 && ks[0].Cols % 8 == 0;
        if (d is not (64 or 128) || !aligned || heads / kvHeads > DecodeRows)
        {
            for (int i = 0; i < b; i++)
                Attention(qs.RowSlice(i, 1), ks[i], vs[i], heads, kvHeads, AttentionMask.None, o.RowSlice(i, 1), null);
            return;
        }
        Enter();
        // The table: B pairs of 8-byte addresses (K, V), then B lengths; one copy for the whole step.
        var table = new byte[b * 16 + b * 4];
        for (int i = 0; i < b; i++)
        {
            BitConverter.TryWriteBytes(table.AsSpan(i * 16), ks[i].Ptr);
            BitConverter.TryWriteBytes(table.AsSpan(i * 16 + 8), vs[i].Ptr);
            BitConverter.TryWriteBytes(table.AsSpan(b * 16 + i * 4), ks[i].Rows);
        }
        ulong tp = Scratch(ref _batchTable, ref _batchTableBytes, table.Length, 4096, "decode batch table");
        fixed (byte* src = table)
            CopyToDevice(tp, src, table.Length, "cuMemcpyHtoDAsync(decode batch table)");
        ulong lens = tp + (ulong)(b * 16);

        var (splits, perSplit) = DecodeSplits(maxLen, kvHeads * b);
        long rowsOut = (long)b * heads;
        long bytes = rowsOut * splits * (d + 1) * 4L;
        ulong partO = Scratch(ref _decodeScratch, ref _decodeScratchBytes, bytes, 1L << 20, "decode attention partials");
        ulong partLse = partO + (ulong)(rowsOut * splits * d * 4L);
        ulong qp = qs.Ptr, op = o.Ptr;
        long qStride = qs.Cols, kStride = ks[0].Cols, oStride = o.Cols;
        float scale = 1f / MathF.Sqrt(d);
        string fn = d == 64 ? "apb_decode_batch_d64" : "apb_decode_batch_d128";
        uint smem = DecodeSharedBytes(heads / kvHeads, d);
        nint f = KernelWithSmem(DecodeFile, fn, DecodeSharedBytes(DecodeRows, 128));
        void** sa = stackalloc void*[] { &qp, &tp, &lens, &partO, &partLse, &heads, &kvHeads, &qStride, &kStride, &scale, &perSplit };
        Context.Launch(f, fn, ((uint)splits, (uint)kvHeads, (uint)b), DecodeThreads, smem, sa);

        ulong lp = 0;
        int lseF32 = 0;
        void** ma = stackalloc void*[] { &partO, &partLse, &op, &oStride, &lp, &lseF32, &heads, &d, &splits };
        Context.Launch(Context.Function(DecodeFile, "apb_decode_merge"), "apb_decode_merge", ((uint)rowsOut, 1, 1), 128, 0, ma);
    }
}
