using Apb.Backends;
using Apb.Backends.Cuda;
using static Apb.Bench.Kernels.KernelBenchContext;

namespace Apb.Bench.Kernels;

/// <summary>
/// Decode attention: one query row (a decode step of the Llama-3.1-8B shape, 32 / 8 heads, d 128) against a long KV
/// cache, with the split-KV kernel (Kernels/decode.cu) and with the prefill mma.sync kernel on the same inputs. A step
/// must read all of K and V once: bytes = 2 x Tk x KV heads x d x 2, the number to hold against HBM bandwidth.
/// </summary>
public sealed class DecodeHarness : KernelHarness
{
    const int Heads = 32, KvHeads = 8, D = 128;

    public override bool HasVariants => true;

    public override string Name => "decode";
    public override string Summary => $"decode attention, 1 query row, {Heads}/{KvHeads} heads, d {D}, causal; split-kv against mma";
    public override string SizeMeaning => "Tk: keys in the cache";
    public override int[] DefaultSizes => [16384, 65536, 131072];

    // split-kv: the backend's pick (version 3, the tensor-core kernel of decode_mma.cu, one full wave of splits;
    // docs/kernels/decode-mma.md); split-kv3: the same, forced; split-kv2 / split-kv2pf: version 2 (CUDA cores) without /
    // with its register double buffer; split-kv1: the shared-memory tile kernel version 2 replaced (docs/kernels/decode.md);
    // mma: the prefill kernel with one row.
    // split-kv-fp8: the backend's pick against an fp8 cache (--kv-cache-dtype fp8: E4M3 codes, a scale per 32 values),
    // the same keys in 144 bytes per row and KV head where bf16 takes 256; split-kv2-fp8 / split-kv2pf-fp8 /
    // split-kv3-fp8: versions 2 and 3 forced.
    // A suffix -onehead (split-kv3-onehead, split-kv3-fp8-onehead): the layout probe of decode-mma.md. One KV head (4
    // query heads) and 8 x the keys: the same bytes and the same work per (key, KV head) row as the 8-head row, but each
    // block's share of the cache is one contiguous run of rows, where with 8 heads a block reads its head's 128 codes
    // (256 B in bf16) and 16 B of scales out of every 1152-byte row (2048 in bf16).
    static readonly string[] All = ["split-kv", "split-kv2", "split-kv2pf", "split-kv3", "split-kv1", "mma", Fp8Variant, "split-kv2-fp8", "split-kv2pf-fp8", "split-kv3-fp8",
                                    "split-kv3" + OneHead, "split-kv3-fp8" + OneHead];
    static readonly string[] Defaults = ["split-kv", "split-kv1", "mma", Fp8Variant];
    const string Fp8Variant = "split-kv-fp8";

    const string OneHead = "-onehead";

    static bool IsOneHead(string variant) => variant.EndsWith(OneHead);

    static string Base(string variant) => IsOneHead(variant) ? variant[..^OneHead.Length] : variant;

    static bool IsFp8(string variant) => Base(variant).EndsWith("-fp8");

    /// <summary>A variant's heads and keys for a size of tk keys: the model's 32 / 8, or the probe's 4 / 1 over 8 x tk.</summary>
    static (int Heads, int KvHeads, int Keys) Shape(string variant, int tk) =>
        IsOneHead(variant) ? (Heads / KvHeads, 1, tk * KvHeads) : (Heads, KvHeads, tk);

    static AttentionKernel Kernel(string variant) => AttentionKernels.Parse(variant.StartsWith("split-kv") ? "split-kv" : variant);

    static DecodeKernelVersion Version(string variant)
    {
        string v = IsFp8(variant) ? Base(variant)[..^"-fp8".Length] : Base(variant);
        return DecodeKernels.Parse(v.StartsWith("split-kv") ? v["split-kv".Length..] : null);
    }

    static void Run(KernelBenchContext ctx, string variant, Action work)
    {
        var saved = ctx.Gpu.DecodeKernel;
        ctx.Gpu.DecodeKernel = Version(variant);
        try { ctx.WithKernel(Kernel(variant), work); }
        finally { ctx.Gpu.DecodeKernel = saved; }
    }

    public override void Check(KernelBenchContext ctx)
    {
        const int tk = 1000;
        var variants = Pick(ctx, All, Defaults);
        foreach (bool oneHead in new[] { false, true })
        {
            var picked = variants.Where(x => IsOneHead(x) == oneHead).ToArray();
            if (picked.Length > 0) Check(ctx, picked, Shape(picked[0], tk));
        }
    }

    static void Check(KernelBenchContext ctx, string[] variants, (int Heads, int KvHeads, int Keys) shape)
    {
        var (heads, kvHeads, tk) = shape;
        var q = ctx.HostValues(heads * D); var k = ctx.HostValues(tk * kvHeads * D); var v = ctx.HostValues(tk * kvHeads * D);
        var co = ctx.Cpu.Allocate(1, heads * D);
        ctx.Cpu.Attention(ctx.OnCpu(q, 1, heads * D), ctx.OnCpu(k, tk, kvHeads * D), ctx.OnCpu(v, tk, kvHeads * D), heads, kvHeads, AttentionMask.Causal, co, null);
        var want = Down(ctx.Cpu, co);
        using var gq = ctx.OnGpu(q, 1, heads * D); using var gk = ctx.OnGpu(k, tk, kvHeads * D); using var gv = ctx.OnGpu(v, tk, kvHeads * D);
        using var go = ctx.Gpu.Allocate(1, heads * D, CudaDType.BF16);
        foreach (var variant in variants.Where(x => !IsFp8(x)))
        {
            Run(ctx, variant, () => ctx.Gpu.Attention(gq, gk, gv, heads, kvHeads, AttentionMask.Causal, go, null));
            ctx.Expect($"{variant} Tq=1 Tk={tk} h={heads}/{kvHeads} d={D}", Down(ctx.Gpu, go), want, 2e-2);
        }
        var fp8 = variants.Where(IsFp8).ToArray();
        if (fp8.Length == 0 || !ctx.Gpu.Fp8KvAvailable) return;
        // fp8: against the CPU's attention over the values the codes stand for (the host codec quantizes k and v).
        var (k8, kValues) = Quantize(ctx, k, tk, kvHeads); var (v8, vValues) = Quantize(ctx, v, tk, kvHeads);
        ctx.Cpu.Attention(ctx.OnCpu(q, 1, heads * D), ctx.OnCpu(kValues, tk, kvHeads * D), ctx.OnCpu(vValues, tk, kvHeads * D), heads, kvHeads, AttentionMask.Causal, co, null);
        var want8 = Down(ctx.Cpu, co);
        foreach (var variant in fp8)
        {
            Run(ctx, variant, () => ctx.Gpu.DecodeAttentionFp8(gq, k8, v8, heads, kvHeads, AttentionMask.Causal, go, null));
            ctx.Expect($"{variant} Tq=1 Tk={tk} h={heads}/{kvHeads} d={D}", Down(ctx.Gpu, go), want8, 2e-2);
        }
        k8.Dispose(); v8.Dispose();
    }

    /// <summary>[rows, KV heads x d] values as fp8 cache rows on the device, and the values they stand for.</summary>
    static (Tensor Rows, float[] Values) Quantize(KernelBenchContext ctx, float[] x, int rows, int kvHeads)
    {
        var values = new float[x.Length];
        var bytes = CudaBackend.EncodeFp8Rows(x, kvHeads * D, values);
        var r = ctx.Gpu.AllocateKv(rows, kvHeads * D, KvCacheDType.Fp8);
        ctx.Gpu.UploadBytes(bytes, r);
        return (r, values);
    }

    /// <summary>Random fp8 cache rows for timing: any finite code (0x7F and 0xFF, the NaNs, become 0x7E), scales in [1, 2) / 448.</summary>
    static Tensor RandomFp8(KernelBenchContext ctx, int rows, int kvHeads)
    {
        int cols = kvHeads * D, rowBytes = CudaBackend.Fp8RowBytes(cols);
        var bytes = new byte[(long)rows * rowBytes];
        Random.Shared.NextBytes(bytes);
        for (long r = 0; r < rows; r++)
        {
            var row = bytes.AsSpan((int)(r * rowBytes), rowBytes);
            for (int i = 0; i < cols; i++) if ((row[i] & 0x7F) == 0x7F) row[i] &= 0xFE;
            var scales = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(row[cols..CudaBackend.Fp8UsedBytes(cols)]);
            for (int g = 0; g < scales.Length; g++) scales[g] = (1f + Random.Shared.NextSingle()) / Fp8E4M3.Max;
        }
        var t = ctx.Gpu.AllocateKv(rows, cols, KvCacheDType.Fp8);
        ctx.Gpu.UploadBytes(bytes, t);
        return t;
    }

    public override IEnumerable<KernelRow> Time(KernelBenchContext ctx, int tk)
    {
        var gpu = ctx.Gpu;
        using var q = ctx.DeviceRandom(1, Heads * D); using var k = ctx.DeviceRandom(tk, KvHeads * D); using var v = ctx.DeviceRandom(tk, KvHeads * D);
        using var o = gpu.Allocate(1, Heads * D, CudaDType.BF16); using var l = gpu.AllocateF32(1, Heads);
        foreach (var variant in Pick(ctx, All, Defaults))
        {
            if (IsFp8(variant) && !gpu.Fp8KvAvailable) continue;
            var (heads, kvHeads, rows) = Shape(variant, tk);
            string layout = IsOneHead(variant) ? ", one contiguous run per block" : "";
            Tensor kt = k, vt = v;
            Work work;
            if (IsFp8(variant))
            {
                kt = RandomFp8(ctx, rows, kvHeads); vt = RandomFp8(ctx, rows, kvHeads);
                work = new Work(Bound.Memory, 2.0 * rows * CudaBackend.Fp8RowBytes(kvHeads * D),
                                $"K + V: 2 x {rows} keys x {kvHeads} heads x (d {D} codes + {D / KvCacheDTypes.Fp8Group} fp32 scales){layout}");
            }
            else
            {
                if (IsOneHead(variant)) { kt = ctx.DeviceRandom(rows, kvHeads * D); vt = ctx.DeviceRandom(rows, kvHeads * D); }
                work = new Work(Bound.Memory, 2.0 * rows * kvHeads * D * 2, $"K + V: 2 x {rows} keys x {kvHeads} heads x d {D} x 2 B{layout}");
            }
            Tensor qv = q, ov = o, lv = l;
            if (heads != Heads) { qv = ctx.DeviceRandom(1, heads * D); ov = gpu.Allocate(1, heads * D, CudaDType.BF16); lv = gpu.AllocateF32(1, heads); }
            Timing.TimingStats? time = null;
            Run(ctx, variant, () => time = ctx.TimeGpu(() =>
            {
                if (IsFp8(variant)) gpu.DecodeAttentionFp8(qv, kt, vt, heads, kvHeads, AttentionMask.Causal, ov, lv);
                else gpu.Attention(qv, kt, vt, heads, kvHeads, AttentionMask.Causal, ov, lv);
            }, 20));
            if (kt != k) { kt.Dispose(); vt.Dispose(); }
            if (qv != q) { qv.Dispose(); ov.Dispose(); lv.Dispose(); }
            yield return new KernelRow(Name, variant, $"Tq=1 Tk={rows} h={heads}/{kvHeads} d={D}", tk, time!, work);
        }
        // The same bytes as a serving step of 16 sequences of Tk/16 keys each, in one batched launch (mma has no batch kernel).
        const int batch = 16;
        int each = tk / batch;
        var keys = Enumerable.Range(0, batch).Select(i => (Tensor)k.RowSlice(i * each, each)).ToArray();
        var values = Enumerable.Range(0, batch).Select(i => (Tensor)v.RowSlice(i * each, each)).ToArray();
        using var qb = ctx.DeviceRandom(batch, Heads * D); using var ob = gpu.Allocate(batch, Heads * D, CudaDType.BF16);
        var batchWork = new Work(Bound.Memory, 2.0 * batch * each * KvHeads * D * 2, $"K + V of {batch} caches of {each} keys");
        foreach (var variant in Pick(ctx, All, Defaults).Where(x => x.StartsWith("split-kv") && !IsFp8(x) && !IsOneHead(x)))
        {
            Timing.TimingStats? time = null;
            Run(ctx, variant, () => time = ctx.TimeGpu(() => gpu.DecodeAttention(qb, keys, values, Heads, KvHeads, ob), 20));
            yield return new KernelRow(Name, variant, $"batch {batch} x Tk={each} h={Heads}/{KvHeads} d={D}", tk, time!, batchWork);
        }
    }
}
