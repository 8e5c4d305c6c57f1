using Apb.Backends;
using Apb.Backends.Cuda;
using static Apb.Gpu.Tests.GpuCheck;

namespace Apb.Gpu.Tests;

/// <summary>
/// The prefill attention kernels over a grid of shapes (query/key lengths, GQA groups, head dims, causal and full), every
/// kernel the shape allows: generic always, mma.sync at d 64/128, the Hopper kernel there too where the device has it.
/// Each against the fp32 CPU reference by FlashAttention's 2x-naive-bf16 rule (<see cref="AttentionReference"/>).
/// </summary>
public static class AttentionCases
{
    public static IEnumerable<GpuCase> All()
    {
        var shapes = new[] { (1, 1), (1, 300), (77, 77), (129, 300), (300, 129), (600, 1000), (1000, 1337) };
        var gqa = new[] { (4, 4), (8, 2), (16, 2) };
        foreach (var (tq, tk) in shapes)
            foreach (var (heads, kv) in gqa)
                foreach (int d in new[] { 16, 32, 64, 128 })
                    foreach (bool causal in new[] { true, false })
                    {
                        // Keep the CPU reference affordable: the largest shapes only with the model-like head dim.
                        if (tq * tk > 100_000 && d != 128) continue;
                        yield return new("attention", $"Tq={tq} Tk={tk} h={heads}/{kv} d={d} {(causal ? "causal" : "full")}",
                            c => Check(c, tq, tk, heads, kv, d, causal));
                    }
        // Scores that grow along the keys: the Hopper kernel's lazy rescale (HOP_LAZY_RESCALE) skips a warp's rescale
        // until some row's maximum grew by more than 8 (log2 units); random keys of one scale move the maxima that far
        // only at the first tile, so these take the rescale branch again and again inside the loop, and the skip
        // branch with P well above 1 between.
        const float ramp = 3f;
        foreach (int d in new[] { 64, 128 })
            foreach (bool causal in new[] { true, false })
                yield return new("attention", $"ramp Tq=300 Tk=1337 h=8/2 d={d} {(causal ? "causal" : "full")}: key j scaled by 1 + {ramp}j/Tk",
                    c => Check(c, 300, 1337, 8, 2, d, causal, ramp));
    }

    /// <summary>The prefill kernels that can take head dim d on this GPU.</summary>
    public static AttentionKernel[] Kernels(CudaBackend gpu, int d)
    {
        if (d is not (64 or 128)) return [AttentionKernel.Generic];
        return gpu.HopperAttentionAvailable
            ? [AttentionKernel.Generic, AttentionKernel.TensorCore, AttentionKernel.Hopper]
            : [AttentionKernel.Generic, AttentionKernel.TensorCore];
    }

    /// <param name="ramp">0, or keys scaled along the sequence (<see cref="AttentionReference.Make"/>'s keyRamp)</param>
    static void Check(GpuCheck c, int tq, int tk, int heads, int kv, int d, bool causal, float ramp = 0f)
    {
        var mask = causal ? AttentionMask.Causal : AttentionMask.None;
        var r = AttentionReference.Make(c, tq, tk, heads, kv, d, causal, keyRamp: ramp);
        var gq = c.OnGpu(r.Q, tq, heads * d); var gk = c.OnGpu(r.K, tk, kv * d); var gv = c.OnGpu(r.V, tk, kv * d);
        foreach (var kernel in Kernels(c.Gpu, d))
        {
            var go = c.Poisoned(tq, heads * d); var gl = c.Poisoned(tq, heads, CudaDType.F32);
            c.WithKernel(kernel, () => c.Gpu.Attention(gq, gk, gv, heads, kv, mask, go, gl));
            string name = AttentionKernels.Name(kernel);
            c.Compare("out", Down(c.Gpu, go), r.RefO, r.OutLimit, name);
            c.CompareLse("lse", Down(c.Gpu, gl), r.RefL, r.LseLimit, name);
            if (kernel == AttentionKernel.Hopper) CheckChunked(c, r, gq, gk, gv, tq, heads, kv, d, mask);
            if (kernel == AttentionKernel.Hopper) CheckLaunchForms(c, r, gq, gk, gv, tq, heads, kv, d, mask);
            if (kernel == AttentionKernel.Hopper) CheckQk8(c, r, gq, gk, gv, tq, tk, heads, kv, d, causal, chunked: false);
            if (kernel == AttentionKernel.Hopper) CheckQk8(c, r, gq, gk, gv, tq, tk, heads, kv, d, causal, chunked: true);
        }
    }

    /// <summary>
    /// The Hopper kernel's QK8 experiment (<see cref="CudaBackend.AttentionQkFp8"/>: S from e4m3 q, a scale per row and
    /// head, and e4m3 k, a scale per 128-key tile and KV head), against the CPU reference of the values those codes
    /// stand for, by the same 2x-naive-bf16 rule: the kernel must compute the attention of its rounded q and k exactly
    /// as the bf16 kernel computes that of its inputs. The error against the unrounded reference is what the rounding
    /// costs; the accuracy harness, not this test, says whether that is acceptable. <paramref name="chunked"/>: in chunks
    /// of 256 keys as <see cref="CheckChunked"/> takes them (apb_attention_hopper_qk8_chunk_d*, <see cref="CudaBackend.Qk8Chunks"/>).
    /// </summary>
    static void CheckQk8(GpuCheck c, AttentionReference r, CudaTensor gq, CudaTensor gk, CudaTensor gv, int tq, int tk, int heads, int kv,
        int d, bool causal, bool chunked)
    {
        // The rounding the CPU backend does for QK8 (Qk8, one home for the rule), on the reference's fp32 inputs.
        var q = (float[])r.Q.Clone();
        Qk8.RoundQueries(q, d);
        var k = (float[])r.K.Clone();
        Qk8.RoundKeys(k, kv, d);
        var rr = AttentionReference.Of(c, q, k, r.V, tq, tk, heads, kv, d, causal);
        var go = c.Poisoned(tq, heads * d); var gl = c.Poisoned(tq, heads, CudaDType.F32);
        bool was = c.Gpu.AttentionQkFp8, wasChunks = c.Gpu.Qk8Chunks;
        try
        {
            c.Gpu.AttentionQkFp8 = true;
            c.Gpu.Qk8Chunks = chunked;
            var mask = causal ? AttentionMask.Causal : AttentionMask.None;
            if (chunked) InChunks(c, () => c.Gpu.Attention(gq, gk, gv, heads, kv, mask, go, gl));
            else c.WithKernel(AttentionKernel.Hopper, () => c.Gpu.Attention(gq, gk, gv, heads, kv, mask, go, gl));
        }
        finally
        {
            c.Gpu.AttentionQkFp8 = was;
            c.Gpu.Qk8Chunks = wasChunks;
        }
        string name = chunked ? "hopper qk8, chunks of 256 keys (against its rounded q and k)" : "hopper qk8 (against its rounded q and k)";
        c.Compare("out", Down(c.Gpu, go), rr.RefO, rr.OutLimit, name);
        c.CompareLse("lse", Down(c.Gpu, gl), rr.RefL, rr.LseLimit, name);
    }

    /// <summary>
    /// The Hopper kernel in chunks of 256 keys, one KV head's query heads per group (the least state budget): a few
    /// hundred keys then take every path a 128K call takes (state stored, resumed, blocks done in an earlier chunk).
    /// </summary>
    static void CheckChunked(GpuCheck c, AttentionReference r, CudaTensor gq, CudaTensor gk, CudaTensor gv, int tq, int heads, int kv,
        int d, AttentionMask mask)
    {
        var go = c.Poisoned(tq, heads * d); var gl = c.Poisoned(tq, heads, CudaDType.F32);
        InChunks(c, () => c.Gpu.Attention(gq, gk, gv, heads, kv, mask, go, gl));
        c.Compare("out", Down(c.Gpu, go), r.RefO, r.OutLimit, "hopper, chunks of 256 keys");
        c.CompareLse("lse", Down(c.Gpu, gl), r.RefL, r.LseLimit, "hopper, chunks of 256 keys");
    }

    /// <summary>
    /// The Hopper kernel's one-pass calls in each launch form, whatever <see cref="CudaBackend.AttentionPairs"/> and
    /// <see cref="CudaBackend.AttentionPersistent"/> default to (the main check above runs the defaults): single blocks
    /// on the plain grid; pairs of blocks sharing their K/V tiles (apb_attention_hopper_pair_d*: an odd count of query
    /// tiles pairs the longest tile with the host's empty block, and a causal pair walks the longer tile's keys); and the
    /// persistent grid (apb_attention_hopper_persistent_d*: one block per SM taking items), as launched and on 3 blocks,
    /// where each block walks many items of different heads and lengths (some with no keys at all) through one K/V ring.
    /// </summary>
    static void CheckLaunchForms(GpuCheck c, AttentionReference r, CudaTensor gq, CudaTensor gk, CudaTensor gv, int tq, int heads, int kv,
        int d, AttentionMask mask)
    {
        var forms = new[]
        {
            (AttentionPairing.Off, false, 0, "hopper, single blocks"),
            (AttentionPairing.All, false, 0, "hopper, pairs of blocks sharing K/V"),
            (AttentionPairing.Off, true, 0, "hopper, persistent grid"),
            (AttentionPairing.Off, true, 3, "hopper, persistent grid of 3 blocks"),
        };
        foreach (var (pairing, persistent, blocks, name) in forms)
        {
            var go = c.Poisoned(tq, heads * d); var gl = c.Poisoned(tq, heads, CudaDType.F32);
            var was = c.Gpu.AttentionPairs;
            bool wasPersistent = c.Gpu.AttentionPersistent;
            int wasBlocks = c.Gpu.AttentionPersistentBlocks;
            try
            {
                c.Gpu.AttentionPairs = pairing;
                c.Gpu.AttentionPersistent = persistent;
                c.Gpu.AttentionPersistentBlocks = blocks;
                c.WithKernel(AttentionKernel.Hopper, () => c.Gpu.Attention(gq, gk, gv, heads, kv, mask, go, gl));
            }
            finally
            {
                c.Gpu.AttentionPairs = was;
                c.Gpu.AttentionPersistent = wasPersistent;
                c.Gpu.AttentionPersistentBlocks = wasBlocks;
            }
            c.Compare("out", Down(c.Gpu, go), r.RefO, r.OutLimit, name);
            c.CompareLse("lse", Down(c.Gpu, gl), r.RefL, r.LseLimit, name);
        }
    }

    /// <summary><paramref name="call"/> on the Hopper kernel in chunks of 256 keys, causal calls too, one GQA group of heads at a time.</summary>
    static void InChunks(GpuCheck c, Action call)
    {
        int keys = c.Gpu.AttentionChunkKeys;
        long budget = c.Gpu.AttentionStateBudget;
        bool chunkCausal = c.Gpu.ChunkCausalAttention;
        try
        {
            c.Gpu.AttentionChunkKeys = 256;
            c.Gpu.AttentionStateBudget = 1;
            c.Gpu.ChunkCausalAttention = true;
            c.WithKernel(AttentionKernel.Hopper, call);
        }
        finally
        {
            c.Gpu.AttentionChunkKeys = keys;
            c.Gpu.AttentionStateBudget = budget;
            c.Gpu.ChunkCausalAttention = chunkCausal;
        }
    }
}
