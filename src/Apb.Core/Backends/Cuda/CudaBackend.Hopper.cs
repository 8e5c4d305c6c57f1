using Apb.Backends.Cuda.Native;

namespace Apb.Backends.Cuda;

/// <summary>
/// Host side of the Hopper attention kernel (Kernels/attention_hopper.cu): the transposed V copy, the three TMA tensor
/// maps and the launch. The kernel's shared-memory layout is mirrored here by <see cref="HopperSharedBytes"/>.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    const string HopperFile = "attention_hopper.cu";

    /// <summary>
    /// Below this many query rows Auto keeps the mma.sync kernel (64-row tiles): a 128-row tile would be more than half
    /// empty, and the V transpose reads and writes every key for little work. A judgement, not a measured crossover.
    /// </summary>
    public const int HopperMinRows = 64;

    /// <summary>
    /// The wgmma + TMA kernel runs here: an sm_90 device, an NVRTC that compiles for sm_90a (not the compute_80 PTX
    /// fallback of an older one) and a driver that encodes tensor maps.
    /// </summary>
    public bool HopperAttentionAvailable => _hopperAvailable ??= HopperAttentionProblem(Context.Arch) is null;

    /// <summary>
    /// Why the Hopper kernel (and so QK8, --prefill-attention fp8) cannot run for <paramref name="arch"/> on this
    /// machine, or null when it can: for `apb doctor` and the errors that point there.
    /// </summary>
    public static string? HopperAttentionProblem(string arch) =>
        arch != "sm_90a" ? $"{arch} is not sm_90 (H100/H200)"
        : Driver.cuTensorMapEncodeTiled == null ? "the driver has no cuTensorMapEncodeTiled (TMA descriptors need CUDA 12 or later)"
        : !KernelCompiler.CompilesFor(arch) ? $"NVRTC {KernelCompiler.NvrtcVersionText()} cannot compile sm_90a (12.0 or later can)"
        : null;

    bool? _hopperAvailable;

    /// <summary>
    /// The default <see cref="AttentionChunkKeys"/>: 32768. Chunks lift the L2 hit rate of a long non-causal call (56 %
    /// -> 98 % at 128K keys, ncu), and since each chunk starts from a fresh state and merges the carried one after its
    /// loop (no wgmma serialized, ptxas C7515 gone) they are faster than one pass: 589 against 567 TFLOP/s at 128K
    /// non-causal, 626 against 626 at 32K (one chunk), the same call (docs/kernels/attention.md, v6). RankMemory counts
    /// the carried state (up to <see cref="DefaultAttentionStateBudget"/>).
    /// </summary>
    public const int DefaultAttentionChunkKeys = 32768;

    /// <summary>
    /// Keys per launch of the Hopper kernel for a non-causal call (a multiple of 128; 0: one launch however long the
    /// call): a call over more keys runs one launch per chunk, the blocks carrying their softmax state from one to the
    /// next, so that the K and V the blocks running at once read stay within L2. APB_ATTENTION_CHUNK_KEYS sets it
    /// (e.g. 32768).
    /// </summary>
    public int AttentionChunkKeys
    {
        get => _chunkKeys;
        set => _chunkKeys = value >= 0 && value % 128 == 0 ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, "attention chunk keys: 0 or a positive multiple of 128");
    }

    /// <summary>
    /// Whether causal calls are chunked too when chunks are on (false by default: at 64K and 128K causal keys, chunks of
    /// 16K and 32K were 0.5-2 % slower than one pass of the same build in v5, and v6's chunks of 32K at 128K 592.6
    /// against 631.4 TFLOP/s; docs/kernels/attention.md).
    /// APB_ATTENTION_CHUNK_CAUSAL=1 sets it; the GPU tests set it to check the causal chunk paths.
    /// </summary>
    public bool ChunkCausalAttention { get; set; } = Environment.GetEnvironmentVariable("APB_ATTENTION_CHUNK_CAUSAL") == "1";

    int _chunkKeys = ChunkKeysFromEnvironment();

    /// <summary>
    /// Which one-pass bf16 calls of the Hopper kernel run as pairs of blocks sharing their K/V tiles
    /// (apb_attention_hopper_pair_d*, the kernel file says how): none, the non-causal ones (the default), or all.
    /// Measured per call on an H100, both orders (docs/kernels/attention.md, session 24): non-causal one pass (up to 32K
    /// keys) +1.7 to +3.7 % at 16K-32K; causal -3.6 to +2.4 % at 16K and 32K (noise either side), level at 64K-128K. So
    /// the non-causal calls (ring's and zigzag's off-diagonal blocks, APB's anchor and passing keys) take pairs and the
    /// causal ones do not. APB_ATTENTION_PAIRS=off|noncausal|all sets it.
    /// </summary>
    public AttentionPairing AttentionPairs { get; set; } = AttentionPairings.Parse(Environment.GetEnvironmentVariable("APB_ATTENTION_PAIRS"));

    /// <summary>
    /// Whether the one-pass bf16 calls that do not run as pairs (by default: the causal ones) run on a persistent grid
    /// (apb_attention_hopper_persistent_d*: one block per SM taking (query tile, head) items from a counter, loading the
    /// next item's Q and first K/V stages under the last tiles of the current one). Why: ncu on an H100 found 16K causal
    /// with the tensor pipe busy 79 % of the cycles against 85 % at 64K, ~3 points of it SMs between blocks and ~5 each
    /// block's fill and drain; the persistent grid took 3.3 % of the cycles off (ncu), and timed interleaved with the
    /// plain grid in one process, causal 4K / 8K / 16K / 32K ran +6-7.5 / +4.5 / +3.2-3.7 / +0.3-0.7 %, 64K and 128K level
    /// (docs/kernels/attention.md, session 24). On by default; APB_ATTENTION_PERSISTENT=0 launches the plain grid.
    /// </summary>
    public bool AttentionPersistent { get; set; } = Environment.GetEnvironmentVariable("APB_ATTENTION_PERSISTENT") != "0";

    /// <summary>The most blocks a persistent call launches; 0 (the default): one per SM. The GPU tests set a few, so that
    /// every block walks many items through one K/V ring even in a small call.</summary>
    public int AttentionPersistentBlocks { get; set; }

    /// <summary>
    /// QK8, off by default (--prefill-attention fp8, or APB_ATTENTION_QK_FP8=1; docs/notes/fp8-attention.md): the Hopper
    /// kernel's one-pass calls at head dims 64 and 128 compute S = Q K^T in e4m3, q with a scale per (row, head) and k
    /// per (128-key tile, KV head), P V still in bf16. Chunked calls take QK8 too only with <see cref="Qk8Chunks"/>;
    /// every other kernel stays bf16.
    /// </summary>
    public bool AttentionQkFp8
    {
        get => _qk8;
        set
        {
            if (value && !HopperAttentionAvailable)
                throw new ApbException($"fp8 prefill attention (--prefill-attention fp8) needs the Hopper attention kernel; {Context.Device.Name}: " +
                    $"{HopperAttentionProblem(Context.Arch)} (`apb doctor` shows it): leave the flag out to run bf16");
            _qk8 = value;
        }
    }

    bool _qk8 = Qk8.EnvironmentDefault;

    /// <summary>
    /// Whether <see cref="AttentionQkFp8"/> reaches chunked calls (non-causal past <see cref="AttentionChunkKeys"/>)
    /// through apb_attention_hopper_qk8_chunk_d*: on unless APB_ATTENTION_QK_FP8_CHUNKS=0 (non-causal 128K: 745 TFLOP/s
    /// in chunks against 626 when those calls stayed bf16, docs/kernels/attention.md).
    /// </summary>
    public bool Qk8Chunks { get; set; } = Environment.GetEnvironmentVariable("APB_ATTENTION_QK_FP8_CHUNKS") != "0";

    static int ChunkKeysFromEnvironment()
    {
        string? s = Environment.GetEnvironmentVariable("APB_ATTENTION_CHUNK_KEYS");
        if (string.IsNullOrEmpty(s)) return DefaultAttentionChunkKeys;
        if (!int.TryParse(s, out int n) || n < 0 || n % 128 != 0)
            throw new ApbException($"APB_ATTENTION_CHUNK_KEYS={s}: expected 0 (one launch per call) or a positive multiple of 128");
        return n;
    }

    /// <summary>
    /// The most bytes of carried state (fp32: 544 bytes per query row and head at d 128) a chunked call holds at once:
    /// its heads go in groups of whole GQA groups that fit, each group through all its chunks before the next.
    /// </summary>
    public long AttentionStateBudget { get; set; } = DefaultAttentionStateBudget;

    /// <summary>The default <see cref="AttentionStateBudget"/>, 1 GiB (RankMemory counts it for calls that chunk).</summary>
    public const long DefaultAttentionStateBudget = 1L << 30;

    /// <summary>Bytes of carried state per query row and head of a chunked call: the kernel's 256 consumer threads x (d/2 + 4) floats per 128 rows.</summary>
    public static long AttentionStateBytesPerRowHead(int d) => 8L * (d / 2 + 4);

    /// <summary>
    /// Bytes of dynamic shared memory: Q tile + 3 stages x (K tile + Vt tile) + 1 KB of ones (used by the kernel's
    /// HOP_ROWSUM_MMA variant) + 8 mbarriers and the persistent kernel's item slot (8 bytes each) + 1 KB to align to
    /// 1024. At d 128: 231,496 of the 232,448 a block may have.
    /// </summary>
    static uint HopperSharedBytes(int d, bool qk8 = false) =>
        (uint)(d * 128 * (qk8 ? 1 : 2) + 3 * (d * 128 * (qk8 ? 1 : 2) + 128 * d * 2) + 1024 + 8 * 9 + 1024);

    void AttentionHopper(ulong qp, ulong kp, ulong vp, ulong op, ulong lp, int lseF32, int Tq, int Tk, int heads, int kvHeads,
                         int d, long qStride, long kStride, long oStride, float scale, int causal)
    {
        int cols = kvHeads * d;
        long tkPad = (Tk + 7L) / 8 * 8; // TMA strides are multiples of 16 bytes
        ulong vt = Pool.Rent(cols * tkPad * 2, "attention (transposed V)");
        try
        {
            {
                long vtStride = tkPad;
                void** targs = stackalloc void*[] { &vp, &vt, &Tk, &cols, &kStride, &vtStride };
                Context.Launch(Context.Function(HopperFile, "apb_transpose_v"), "apb_transpose_v",
                    ((uint)((cols + 31) / 32), (uint)((Tk + 31) / 32), 1), 256, 0, targs);
            }
            // Tensor maps need 64-byte alignment: carve them out of one stack buffer.
            byte* raw = stackalloc byte[3 * 128 + 64];
            byte* maps = (byte*)(((nuint)raw + 63) & ~(nuint)63);
            byte* mq = maps, mk = maps + 128, mv = maps + 256;
            // Q: [Tq rows][heads x d], K: [Tk rows][kvHeads x d], boxes of 64 columns x 128 rows. Vt: [kvHeads x d rows][Tk], boxes of 64 keys x d rows.
            EncodeTensorMap(mq, qp, (ulong)(heads * d), (ulong)Tq, (ulong)qStride * 2, 64, 128, "q");
            EncodeTensorMap(mk, kp, (ulong)cols, (ulong)Tk, (ulong)kStride * 2, 64, 128, "k");
            EncodeTensorMap(mv, vt, (ulong)Tk, (ulong)cols, (ulong)tkPad * 2, 64, (uint)d, "transposed v");

            uint smem = HopperSharedBytes(d);
            int qTiles = (Tq + 127) / 128, keyTiles = (Tk + 127) / 128, chunkTiles = AttentionChunkKeys / 128;
            int h0 = 0, chunk = 0;
            ulong state = 0;
            void** args = stackalloc void*[] { mq, mk, mv, &op, &lp, &lseF32, &Tq, &Tk, &heads, &kvHeads, &oStride, &scale, &causal,
                                               &h0, &chunkTiles, &chunk, &state };
            bool onePass = chunkTiles == 0 || keyTiles <= chunkTiles || (causal != 0 && !ChunkCausalAttention);
            if (AttentionQkFp8 && (onePass || Qk8Chunks))
            {
                AttentionHopperQk8(qp, kp, mv, op, lp, lseF32, Tq, Tk, heads, kvHeads, d, qStride, kStride, oStride, scale, causal,
                    onePass ? 0 : chunkTiles);
                return;
            }
            if (onePass)
            {
                bool pairs = AttentionPairs == AttentionPairing.All || (AttentionPairs == AttentionPairing.NonCausal && causal == 0);
                if (!pairs && AttentionPersistent)
                {
                    LaunchPersistent(d, smem, mq, mk, mv, op, lp, lseF32, Tq, Tk, heads, kvHeads, oStride, scale, causal, qTiles);
                    return;
                }
                string fn = (pairs ? "apb_attention_hopper_pair_d" : "apb_attention_hopper_d") + d;
                // An even count of blocks along x for either kernel: the pair kernel's clusters must divide the grid (the
                // extra block has no rows; it loads and releases its half of the pair's stages), and the plain kernel's
                // extra block leaves at once.
                uint gridX = (uint)(qTiles + (qTiles & 1));
                Context.Launch(KernelWithSmem(HopperFile, fn, smem), fn, (gridX, (uint)heads, 1), 384, smem, args);
                return;
            }
            // Chunks: a kernel of its own, so that the one-pass kernel carries none of the state code (v5 in the notes:
            // with it, one pass ran 16 % slower).
            string cfn = d == 64 ? "apb_attention_hopper_chunk_d64" : "apb_attention_hopper_chunk_d128";
            LaunchChunks(KernelWithSmem(HopperFile, cfn, smem), cfn, smem, args, qTiles, keyTiles, chunkTiles, heads, kvHeads, d,
                ref h0, ref chunk, ref state);
        }
        finally
        {
            Pool.Return(vt); // stream-ordered: a later renter's work queues behind this kernel
        }
    }

    /// <summary>
    /// The persistent one-pass kernel: as many blocks as the GPU has SMs (one fits an SM), or as there are items, taking
    /// the qTiles x heads items from a counter zeroed here on the stream.
    /// </summary>
    void LaunchPersistent(int d, uint smem, byte* mq, byte* mk, byte* mv, ulong op, ulong lp, int lseF32, int Tq, int Tk, int heads,
                          int kvHeads, long oStride, float scale, int causal, int qTiles)
    {
        long items = (long)qTiles * heads;
        ulong next = Pool.Rent(4, "attention (persistent item counter)");
        try
        {
            Driver.Check(Driver.cuMemsetD32Async(next, 0, 1, Context.Stream), "cuMemsetD32Async(attention item counter)");
            void** args = stackalloc void*[] { mq, mk, mv, &op, &lp, &lseF32, &Tq, &Tk, &heads, &kvHeads, &oStride, &scale, &causal, &next };
            string fn = "apb_attention_hopper_persistent_d" + d;
            int blocks = AttentionPersistentBlocks > 0 ? AttentionPersistentBlocks : Context.Device.Multiprocessors;
            uint grid = (uint)Math.Min(items, blocks);
            Context.Launch(KernelWithSmem(HopperFile, fn, smem), fn, (grid, 1, 1), 384, smem, args);
        }
        finally
        {
            Pool.Return(next); // stream-ordered, as vt
        }
    }

    /// <summary>
    /// A chunked call's launches, one per (head group, chunk), with the carried state: the head groups are whole GQA
    /// groups that fit <see cref="AttentionStateBudget"/>. <paramref name="args"/> points at h0, chunk and state, which
    /// this sets before each launch.
    /// </summary>
    void LaunchChunks(nint f, string name, uint smem, void** args, int qTiles, int keyTiles, int chunkTiles, int heads, int kvHeads, int d,
                      ref int h0, ref int chunk, ref ulong state)
    {
        int group = heads / kvHeads, chunks = (keyTiles + chunkTiles - 1) / chunkTiles;
        long perHead = (long)qTiles * 128 * AttentionStateBytesPerRowHead(d);
        int headsPer = group * (int)Math.Clamp(AttentionStateBudget / (perHead * group), 1, kvHeads);
        state = Pool.Rent(perHead * headsPer, "attention (chunk state)");
        try
        {
            for (h0 = 0; h0 < heads; h0 += headsPer)
                for (chunk = 0; chunk < chunks; chunk++)
                    Context.Launch(f, name, ((uint)qTiles, (uint)Math.Min(headsPer, heads - h0), 1), 384, smem, args);
        }
        finally
        {
            Pool.Return(state);
        }
    }

    /// <summary>
    /// QK8's launch (<see cref="AttentionQkFp8"/>): q and k quantized into e4m3 codes and scales, their tensor maps (rows
    /// of d bytes: 128-byte swizzle at d 128, 64-byte at d 64), V's transposed bf16 map as the bf16 kernel has it; one
    /// pass, or chunks of <paramref name="chunkTiles"/> key tiles (0: one pass) as the bf16 kernel takes them.
    /// </summary>
    void AttentionHopperQk8(ulong qp, ulong kp, byte* mv, ulong op, ulong lp, int lseF32, int Tq, int Tk, int heads, int kvHeads,
                            int d, long qStride, long kStride, long oStride, float scale, int causal, int chunkTiles)
    {
        int keyTiles = (Tk + 127) / 128, qTiles = (Tq + 127) / 128;
        ulong q8 = Pool.Rent((long)Tq * heads * d, "attention (q in e4m3)");
        ulong qs = Pool.Rent((long)Tq * heads * 4, "attention (q scales)");
        ulong k8 = Pool.Rent((long)Tk * kvHeads * d, "attention (k in e4m3)");
        ulong ks = Pool.Rent((long)keyTiles * kvHeads * 4, "attention (k scales)");
        try
        {
            void** qa = stackalloc void*[] { &qp, &qStride, &Tq, &heads, &d, &q8, &qs };
            Context.Launch(Context.Function(HopperFile, "apb_qk8_quantize_rows"), "apb_qk8_quantize_rows",
                ((uint)(((long)Tq * heads * 32 + 255) / 256), 1, 1), 256, 0, qa);
            void** ka = stackalloc void*[] { &kp, &kStride, &Tk, &kvHeads, &d, &k8, &ks };
            Context.Launch(Context.Function(HopperFile, "apb_qk8_quantize_key_tiles"), "apb_qk8_quantize_key_tiles",
                ((uint)keyTiles, (uint)kvHeads, 1), 256, 0, ka);

            byte* raw = stackalloc byte[2 * 128 + 64];
            byte* maps = (byte*)(((nuint)raw + 63) & ~(nuint)63);
            byte* mq = maps, mk = maps + 128;
            int swizzle = d == 128 ? Driver.CU_TENSOR_MAP_SWIZZLE_128B : Driver.CU_TENSOR_MAP_SWIZZLE_64B;
            EncodeTensorMap(mq, q8, (ulong)(heads * d), (ulong)Tq, (ulong)(heads * d), (uint)d, 128, "q (e4m3)",
                Driver.CU_TENSOR_MAP_DATA_TYPE_UINT8, swizzle);
            EncodeTensorMap(mk, k8, (ulong)(kvHeads * d), (ulong)Tk, (ulong)(kvHeads * d), (uint)d, 128, "k (e4m3)",
                Driver.CU_TENSOR_MAP_DATA_TYPE_UINT8, swizzle);

            uint smem = HopperSharedBytes(d, qk8: true);
            if (chunkTiles == 0)
            {
                string fn = d == 64 ? "apb_attention_hopper_qk8_d64" : "apb_attention_hopper_qk8_d128";
                void** args = stackalloc void*[] { mq, mk, mv, &op, &lp, &lseF32, &Tq, &Tk, &heads, &kvHeads, &oStride, &scale, &causal, &qs, &ks };
                Context.Launch(KernelWithSmem(HopperFile, fn, smem), fn, ((uint)qTiles, (uint)heads, 1), 384, smem, args);
                return;
            }
            string cfn = d == 64 ? "apb_attention_hopper_qk8_chunk_d64" : "apb_attention_hopper_qk8_chunk_d128";
            int h0 = 0, chunk = 0;
            ulong state = 0;
            void** cargs = stackalloc void*[] { mq, mk, mv, &op, &lp, &lseF32, &Tq, &Tk, &heads, &kvHeads, &oStride, &scale, &causal,
                                                &h0, &chunkTiles, &chunk, &state, &qs, &ks };
            LaunchChunks(KernelWithSmem(HopperFile, cfn, smem), cfn, smem, cargs, qTiles, keyTiles, chunkTiles, heads, kvHeads, d,
                ref h0, ref chunk, ref state);
        }
        finally
        {
            Pool.Return(ks); Pool.Return(k8); Pool.Return(qs); Pool.Return(q8); // stream-ordered, as vt
        }
    }

    /// <summary>
    /// A 2-D tensor map (bf16 with 128-byte swizzle unless told otherwise); out-of-bounds rows and columns read as zeros.
    /// </summary>
    static void EncodeTensorMap(byte* map, ulong address, ulong inner, ulong rows, ulong rowBytes, uint boxInner, uint boxRows, string what,
                                int dataType = Driver.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, int swizzle = Driver.CU_TENSOR_MAP_SWIZZLE_128B)
    {
        ulong* dims = stackalloc ulong[] { inner, rows };
        ulong* strides = stackalloc ulong[] { rowBytes };
        uint* box = stackalloc uint[] { boxInner, boxRows };
        uint* elem = stackalloc uint[] { 1, 1 };
        int rc = Driver.cuTensorMapEncodeTiled(map, dataType, 2, address, dims, strides, box, elem,
            0 /* no interleave */, swizzle, Driver.CU_TENSOR_MAP_L2_PROMOTION_L2_256B, 0 /* zero fill */);
        Driver.Check(rc, $"cuTensorMapEncodeTiled({what}: {inner} x {rows}, row {rowBytes} bytes, box {boxInner} x {boxRows})");
    }
}
