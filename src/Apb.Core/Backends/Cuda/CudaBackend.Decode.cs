
namespace Apb.Backends.Cuda;

/// <summary>
/// Host side of the split-KV decode attention (Kernels/decode.cu): a few query rows against a long cache, the keys cut
/// into splits so that every SM streams a share of the cache, then one merge by LSE. <see cref="Attention"/> hands a call
/// here when <see cref="ChooseAttentionKernel"/> picks <see cref="AttentionKernel.SplitKv"/>; the kernel's shared-memory
/// layout is mirrored by <see cref="DecodeSharedBytes"/>.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    const string DecodeFile = "decode.cu", DecodeMmaFile = "decode_mma.cu";

    /// <summary>The most query rows the decode kernel takes: one decode step up to a handful of drafted tokens.</summary>
    public const int DecodeMaxQueryRows = 16;

    const int DecodeTile = 64, DecodeRows = 64, DecodeThreads = 128; // DEC_TILE, DEC_ROWS, DEC_THREADS in decode.cu

    /// <summary>The most splits a call cuts its keys into: apb_decode_merge keeps one float per split in shared memory (32 KB).</summary>
    const int DecodeMaxSplits = 8192;
    const int Decode2MaxPairs = 8, Decode2Threads = 128, Decode2Unroll = 4;  // the largest P, DV2_THREADS, DV2_U
    const int Decode3MaxPairs = 16, Decode3Threads = 128, Decode3Step = 64;  // decode_mma.cu: 16 mma rows, DV3_THREADS, 4 warps x DV3_TILE

    /// <summary>
    /// Which split-KV kernel serves calls that version 2 or 3 can take (at most 8 or 16 pairs per KV head). Auto:
    /// version 3, the tensor-core kernel of decode_mma.cu, its splits making one full wave (docs/kernels/decode-mma.md:
    /// faster than version 2 at every length measured, bf16 and fp8, one sequence and batch); the others force one
    /// (APB_DECODE_KERNEL=3, 2, 2pf or 1; `apb bench kernel decode --variants`). Calls with more pairs than the chosen
    /// version takes run version 1.
    /// </summary>
    public DecodeKernelVersion DecodeKernel { get; set; } = DecodeKernels.Parse(Environment.GetEnvironmentVariable("APB_DECODE_KERNEL"));

    /// <summary>
    /// Blocks per SM the splits aim for, or 0 (the default) for as many as fit on an SM at once (the driver's occupancy
    /// for the kernel): one full wave, each block streaming the longest share it can. Set APB_DECODE_BLOCKS_PER_SM to
    /// try others. Measured (docs/kernels/decode.md): the best count was the resident one (3 for the prefetch kernel
    /// of 168 registers, 2 for the plain batch kernel of 208); a count above it leaves a partial second wave.
    /// </summary>
    public int DecodeBlocksPerSm { get; set; } =
        int.TryParse(Environment.GetEnvironmentVariable("APB_DECODE_BLOCKS_PER_SM"), out int n) && n is > 0 and <= 64 ? n : 0;

    readonly Dictionary<nint, int> _resident = [];

    /// <summary>Blocks per SM for a launch of <paramref name="f"/>: the set count, else the kernel's occupancy.</summary>
    int BlocksPerSm(nint f, int threads, uint smem)
    {
        if (DecodeBlocksPerSm > 0) return DecodeBlocksPerSm;
        if (_resident.TryGetValue(f, out int n)) return n;
        int blocks;
        Native.Driver.Check(Native.Driver.cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, f, threads, smem), "cuOccupancyMaxActiveBlocksPerMultiprocessor");
        return _resident[f] = Math.Max(1, blocks);
    }

    ulong _decodeScratch; // partial outputs and LSEs of the splits, fp32, grown as needed
    long _decodeScratchBytes;

    /// <summary>Bytes of dynamic shared memory for R = min(64, Tq x group) pairs: q, one K/V tile, scores, output, 3 per-pair floats.</summary>
    static uint DecodeSharedBytes(int pairs, int d)
    {
        int r = Math.Min(pairs, DecodeRows), w = d / 2 + 1;
        return (uint)(4 * (r * w + DecodeTile * w + r * (DecodeTile + 1) + r * d + 3 * r));
    }

    /// <summary>
    /// How many splits of whole tiles (64 keys for version 1, a block step for version 2): enough blocks for about
    /// <paramref name="perSm"/> per SM over (KV heads x row groups or sequences), never more than there are tiles.
    /// Returns (splits, tiles per split).
    /// </summary>
    (int Splits, int TilesPerSplit) DecodeSplits(int tk, int blocksPerSplit, int perSm, int tile = DecodeTile)
    {
        int tiles = Math.Max(1, (tk + tile - 1) / tile);
        int want = Math.Clamp(perSm * Context.Device.Multiprocessors / Math.Max(1, blocksPerSplit), 1, DecodeMaxSplits);
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
        SplitDecode(DecodeKernelFor(batch: false, pairs, d), qs, ks.Ptr, vs.Ptr, tk, ks.Cols, rowBlocks, heads, kvHeads, mask, o, l);
    }

    /// <summary>
    /// One sequence's split-KV launch and merge, for the kernel <paramref name="k"/> whose K and V are rows of
    /// <paramref name="kStride"/> elements (bf16) or bytes (fp8 rows) from <paramref name="kp"/> and <paramref name="vp"/>.
    /// </summary>
    void SplitDecode(DecodeLaunch k, CudaTensor qs, ulong kp, ulong vp, int tk, long kStride, int rowBlocks, int heads, int kvHeads,
                     AttentionMask mask, CudaTensor o, CudaTensor? l)
    {
        int tq = qs.Rows, d = qs.Cols / heads;
        var (splits, perSplit) = DecodeSplits(tk, kvHeads * rowBlocks, k);
        long rowsOut = (long)tq * heads;
        var (partO, partLse) = DecodePartials(rowsOut, splits, d);
        ulong qp = qs.Ptr;
        long qStride = qs.Cols;
        float scale = 1f / MathF.Sqrt(d);
        int causal = mask == AttentionMask.Causal ? 1 : 0;
        void** sa = stackalloc void*[] { &qp, &kp, &vp, &partO, &partLse, &tq, &tk, &heads, &kvHeads, &qStride, &kStride, &scale, &causal, &perSplit };
        Context.Launch(k.F, k.Name, ((uint)splits, (uint)kvHeads, (uint)rowBlocks), k.Threads, k.Smem, sa);
        DecodeMerge(partO, partLse, o, l, rowsOut, heads, d, splits);
    }

    /// <summary>
    /// A batched decode step's query and output (bf16, one row per sequence), checked against the heads and the
    /// sequences' K/V lists (their rows are the caller's to check, by dtype): q, out, B and the head dim.
    /// </summary>
    (CudaTensor Q, CudaTensor O, int B, int D) BatchDecodeCall(Tensor q, IReadOnlyList<Tensor> keys, IReadOnlyList<Tensor> values,
                                                              int heads, int kvHeads, Tensor output, string op)
    {
        var qs = Bf16(q, op); var o = Bf16(output, op);
        int b = qs.Rows, d = heads > 0 ? qs.Cols / heads : 0;
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0 || qs.Cols != heads * d || keys.Count != b || values.Count != b ||
            o.Rows != b || o.Cols != qs.Cols)
            throw new ArgumentException($"{op}: q {qs} ({heads}/{kvHeads} heads), {keys.Count} key and {values.Count} value tensors, out {o}");
        return (qs, o, b, d);
    }

    /// <summary>
    /// A batched decode step's launch and merge, for the batch kernel <paramref name="k"/>: the table (B pairs of 8-byte
    /// K/V addresses, then B lengths) goes up in one copy, then one launch over (splits, KV heads, B). Rows are
    /// <paramref name="kStride"/> elements (bf16) or bytes (fp8 rows).
    /// </summary>
    void BatchDecode(DecodeLaunch k, CudaTensor qs, CudaTensor[] ks, CudaTensor[] vs, int maxLen, long kStride, int heads, int kvHeads, CudaTensor o)
    {
        int b = qs.Rows, d = qs.Cols / heads;
        Enter();
        // Made for every layer of every decode step: on the stack, no heap.
        int tableBytes = b * 16 + b * 4;
        Span<byte> table = tableBytes <= 8192 ? stackalloc byte[tableBytes] : new byte[tableBytes];
        for (int i = 0; i < b; i++)
        {
            BitConverter.TryWriteBytes(table[(i * 16)..], ks[i].Ptr);
            BitConverter.TryWriteBytes(table[(i * 16 + 8)..], vs[i].Ptr);
            BitConverter.TryWriteBytes(table[(b * 16 + i * 4)..], ks[i].Rows);
        }
        ulong tp = Scratch(ref _batchTable, ref _batchTableBytes, tableBytes, 4096, "decode batch table");
        fixed (byte* src = table) UploadSmall(tp, src, tableBytes, "decode batch table");
        ulong lens = tp + (ulong)(b * 16);

        var (splits, perSplit) = DecodeSplits(maxLen, kvHeads * b, k);
        long rowsOut = (long)b * heads;
        var (partO, partLse) = DecodePartials(rowsOut, splits, d);
        ulong qp = qs.Ptr;
        long qStride = qs.Cols;
        float scale = 1f / MathF.Sqrt(d);
        void** sa = stackalloc void*[] { &qp, &tp, &lens, &partO, &partLse, &heads, &kvHeads, &qStride, &kStride, &scale, &perSplit };
        Context.Launch(k.F, k.Name, ((uint)splits, (uint)kvHeads, (uint)b), k.Threads, k.Smem, sa);
        DecodeMerge(partO, partLse, o, null, rowsOut, heads, d, splits);
    }

    /// <summary>A split-KV kernel as a call runs it; its last argument is tiles per split (version 1) or keys (version 2).</summary>
    readonly record struct DecodeLaunch(string Name, nint F, uint Threads, uint Smem, int Tile, int PerSm, bool CountsKeys);

    /// <summary>
    /// The kernel for a call of <paramref name="pairs"/> (query row, head) pairs per KV head: version 2 where it applies
    /// or 3 (<see cref="FastDecode"/>), its splits aimed at one wave of it; version 1 otherwise, at the 4 blocks per SM it was
    /// measured with unless <see cref="DecodeBlocksPerSm"/> is set.
    /// </summary>
    DecodeLaunch DecodeKernelFor(bool batch, int pairs, int d)
    {
        if (FastDecode(batch, fp8: false, pairs, d) is { } fast) return fast;
        string fn = $"apb_decode_{(batch ? "batch" : "split")}_d{d}";
        // The limit goes to what any call may need (the widest row block at d = 128): smem varies from call to call.
        nint f = KernelWithSmem(DecodeFile, fn, DecodeSharedBytes(DecodeRows, 128));
        return new(fn, f, DecodeThreads, DecodeSharedBytes(pairs, d), DecodeTile, DecodeBlocksPerSm > 0 ? DecodeBlocksPerSm : 4, CountsKeys: false);
    }

    /// <summary>
    /// The version-2 or version-3 kernel for a call of <paramref name="pairs"/> (query row, head) pairs per KV head, bf16
    /// or fp8 cache, one sequence or a batch, as the call runs it (one full wave of its blocks, keys per split); null
    /// where version 1 runs (<see cref="DecodeKernel"/> V1, more pairs than the version takes, head dim not 64 or 128).
    /// </summary>
    DecodeLaunch? FastDecode(bool batch, bool fp8, int pairs, int d)
    {
        if (DecodeKernel == DecodeKernelVersion.V1 || pairs > FastDecodeMaxPairs || d is not (64 or 128)) return null;
        bool v3 = DecodeKernel is DecodeKernelVersion.V3 or DecodeKernelVersion.Auto, prefetch = DecodeKernel == DecodeKernelVersion.V2Prefetch;
        int p = v3 ? (pairs <= 8 ? 8 : 16) : pairs <= 1 ? 1 : pairs <= 2 ? 2 : pairs <= 4 ? 4 : 8;
        // Asked once per layer of every decode step: the kernel's name and handle are looked up once per shape.
        var key = (v3, prefetch, batch, fp8, p, d);
        if (!_fastDecode.TryGetValue(key, out var k))
        {
            string kind = batch ? "batch" : "split", suffix = fp8 ? "_fp8" : "";
            string name = v3 ? $"apb_decode3_{kind}_d{d}_p{p}{suffix}" : $"apb_decode2_{kind}_d{d}_p{p}{(prefetch ? "_pf" : "")}{suffix}";
            _fastDecode[key] = k = (name, Context.Function(v3 ? DecodeMmaFile : DecodeFile, name));
        }
        int threads = v3 ? Decode3Threads : Decode2Threads;
        return new(k.Name, k.F, (uint)threads, 0, v3 ? Decode3Step : Decode2Step(d), BlocksPerSm(k.F, threads, 0), CountsKeys: true);
    }

    readonly Dictionary<(bool V3, bool Prefetch, bool Batch, bool Fp8, int P, int D), (string Name, nint F)> _fastDecode = [];

    /// <summary>The most pairs per KV head the fast kernel of <see cref="DecodeKernel"/> takes (0 under version 1).</summary>
    int FastDecodeMaxPairs => DecodeKernel switch
    {
        DecodeKernelVersion.V1 => 0, DecodeKernelVersion.V3 or DecodeKernelVersion.Auto => Decode3MaxPairs, _ => Decode2MaxPairs,
    };

    /// <summary><see cref="DecodeSplits(int, int, int, int)"/> for a launch, with its last argument: tiles or keys per split.</summary>
    (int Splits, int PerSplit) DecodeSplits(int tk, int blocksPerSplit, DecodeLaunch k)
    {
        var (splits, tiles) = DecodeSplits(tk, blocksPerSplit, k.PerSm, k.Tile);
        return (splits, k.CountsKeys ? tiles * k.Tile : tiles);
    }

    /// <summary>Keys per block step of version 2: (lane groups of D/8 lanes in 128 threads) x DV2_U.</summary>
    static int Decode2Step(int d) => Decode2Threads / (d / 8) * Decode2Unroll;

    /// <summary>The splits' fp32 partials in the backend's scratch: outputs [rows][splits][d], then LSEs [rows][splits].</summary>
    (ulong PartO, ulong PartLse) DecodePartials(long rowsOut, int splits, int d)
    {
        ulong partO = Scratch(ref _decodeScratch, ref _decodeScratchBytes, rowsOut * splits * (d + 1) * 4L, 1L << 20, "decode attention partials");
        return (partO, partO + (ulong)(rowsOut * splits * d * 4L));
    }

    /// <summary>The splits' partials of rows x heads (query row, head) pairs into the output (and LSE when given).</summary>
    void DecodeMerge(ulong partO, ulong partLse, CudaTensor o, CudaTensor? l, long rowsOut, int heads, int d, int splits)
    {
        ulong op = o.Ptr, lp = l?.Ptr ?? 0;
        long oStride = o.Cols;
        int lseF32 = l?.DType == CudaDType.F32 ? 1 : 0;
        void** ma = stackalloc void*[] { &partO, &partLse, &op, &oStride, &lp, &lseF32, &heads, &d, &splits };
        // Dynamic shared memory: the merge's weight per split (DecodeSplits keeps splits under DecodeMaxSplits).
        Context.Launch(Context.Function(DecodeFile, "apb_decode_merge"), "apb_decode_merge", ((uint)rowsOut, 1, 1), 128, (uint)(4 * splits), ma);
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
        var (qs, o, b, d) = BatchDecodeCall(q, keys, values, heads, kvHeads, output, "decode attention");
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
        BatchDecode(DecodeKernelFor(batch: true, heads / kvHeads, d), qs, ks, vs, maxLen, ks[0].Cols, heads, kvHeads, o);
    }
}

/// <summary>The split-KV decode kernels (Kernels/decode.cu: versions 1 and 2, docs/kernels/decode.md; decode_mma.cu: version 3, decode-mma.md).</summary>
public enum DecodeKernelVersion { Auto, V2, V2Prefetch, V1, V3 }

/// <summary>Their names in APB_DECODE_KERNEL and in `apb bench kernel decode --variants` (split-kv + the name).</summary>
public static class DecodeKernels
{
    /// <summary>"1" or "v1", "2" or "v2", "2pf" or "v2pf", "3" or "v3"; anything else, unset included, is Auto.</summary>
    public static DecodeKernelVersion Parse(string? name) => name?.Trim().ToLowerInvariant() switch
    {
        "1" or "v1" => DecodeKernelVersion.V1,
        "2" or "v2" => DecodeKernelVersion.V2,
        "2pf" or "v2pf" or "v2-pf" => DecodeKernelVersion.V2Prefetch,
        "3" or "v3" => DecodeKernelVersion.V3,
        _ => DecodeKernelVersion.Auto,
    };
}
