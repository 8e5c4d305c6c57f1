using Apb.Backends;
using Apb.Backends.Cuda;
using static Apb.Bench.Kernels.KernelBenchContext;

namespace Apb.Bench.Kernels;

/// <summary>
/// The prefill attention kernels (Kernels/attention.cu, attention_hopper.cu) at the Llama-3.1-8B shape: 32 query / 8 KV
/// heads, d 128, causal (bottom-right) and full, each variant: hopper (wgmma + TMA, sm_90), mma (mma.sync), generic;
/// hopper-qk8 (the Hopper kernel with S in e4m3, <see cref="CudaBackend.AttentionQkFp8"/>), hopper-pairs (pairs of
/// blocks sharing K/V, <see cref="CudaBackend.AttentionPairs"/>) and hopper-persistent (one block per SM taking items,
/// <see cref="CudaBackend.AttentionPersistent"/>) when asked for by name.
/// FLOPs by FlashAttention's convention: 4 d heads per visible (query, key) pair, N^2 / 2 pairs when causal.
/// </summary>
public sealed class AttentionHarness : KernelHarness
{
    const int Heads = 32, KvHeads = 8, D = 128;
    /// <summary>The generic kernel takes minutes per call beyond this; it is timed there only when asked for by name.</summary>
    const int GenericMaxDefault = 16384;

    public override bool HasVariants => true;
    public override bool HasMasks => true;

    public override string Name => "attention";
    public override string Summary => $"prefill attention, {Heads}/{KvHeads} heads, d {D}, causal and full; variants hopper / mma / generic (auto: the backend's own pick)";
    public override string SizeMeaning => "N: query rows and keys (keys + --extra-keys)";
    public override int[] DefaultSizes => [16384, 65536, 131072];

    const string Qk8 = "hopper-qk8", Pairs = "hopper-pairs", Persistent = "hopper-persistent";

    /// <summary>The Hopper settings a variant fixes (null: the backend's own, as auto and the other kernels run).</summary>
    static (bool? Qk8, AttentionPairing? Pairs, bool? Persistent) HopperForm(string variant) => variant switch
    {
        Qk8 => (true, null, null),
        "hopper" => (false, AttentionPairing.Off, false),
        Pairs => (false, AttentionPairing.All, false),
        Persistent => (false, AttentionPairing.Off, true),
        _ => (null, null, null),
    };

    static AttentionKernel Kernel(CudaBackend gpu, string variant) => variant switch
    {
        "auto" => gpu.AttentionKernel,
        Qk8 or Pairs or Persistent => AttentionKernel.Hopper,
        _ => AttentionKernels.Parse(variant),
    };

    string[] Variants(KernelBenchContext ctx)
    {
        string[] all = ctx.Gpu.HopperAttentionAvailable ? ["hopper", "mma", "generic"] : ["mma", "generic"];
        return Pick(ctx, ["auto", .. all, .. ctx.Gpu.HopperAttentionAvailable ? new[] { Qk8, Pairs, Persistent } : []], all);
    }

    /// <summary>
    /// Runs <paramref name="work"/> with the variant's kernel: hopper-qk8 with S in e4m3 (chunked calls included, through
    /// <see cref="CudaBackend.Qk8Chunks"/>), hopper-pairs as pairs of blocks sharing K/V for every one-pass call
    /// (<see cref="CudaBackend.AttentionPairs"/>), hopper-persistent on the persistent grid for every one-pass call
    /// (<see cref="CudaBackend.AttentionPersistent"/>), hopper in bf16 as single blocks on the plain grid whatever
    /// APB_ATTENTION_QK_FP8, APB_ATTENTION_PAIRS and APB_ATTENTION_PERSISTENT say (so that one call times them all),
    /// auto as the backend is set.
    /// </summary>
    static void With(KernelBenchContext ctx, string variant, Action work)
    {
        bool was = ctx.Gpu.AttentionQkFp8, wasChunks = ctx.Gpu.Qk8Chunks, wasPersistent = ctx.Gpu.AttentionPersistent;
        var wasPairs = ctx.Gpu.AttentionPairs;
        var (qk8, pairs, persistent) = HopperForm(variant);
        try
        {
            ctx.Gpu.AttentionQkFp8 = qk8 ?? was;
            ctx.Gpu.Qk8Chunks = variant == Qk8 || wasChunks;
            ctx.Gpu.AttentionPairs = pairs ?? wasPairs;
            ctx.Gpu.AttentionPersistent = persistent ?? wasPersistent;
            ctx.WithKernel(Kernel(ctx.Gpu, variant), work);
        }
        finally
        {
            ctx.Gpu.AttentionQkFp8 = was;
            ctx.Gpu.Qk8Chunks = wasChunks;
            ctx.Gpu.AttentionPairs = wasPairs;
            ctx.Gpu.AttentionPersistent = wasPersistent;
        }
    }

    static AttentionMask[] Masks(KernelBenchContext ctx) => ctx.Settings.Masks ?? [AttentionMask.Causal, AttentionMask.None];

    static string MaskName(AttentionMask m) => m == AttentionMask.Causal ? "causal" : "full";

    public override void Check(KernelBenchContext ctx)
    {
        const int n = 256, h = 8, kv = 2;
        var q = ctx.HostValues(n * h * D); var k = ctx.HostValues(n * kv * D); var v = ctx.HostValues(n * kv * D);
        using var gq = ctx.OnGpu(q, n, h * D); using var gk = ctx.OnGpu(k, n, kv * D); using var gv = ctx.OnGpu(v, n, kv * D);
        using var go = ctx.Gpu.Allocate(n, h * D, CudaDType.BF16);
        foreach (var mask in Masks(ctx))
        {
            var co = ctx.Cpu.Allocate(n, h * D);
            ctx.Cpu.Attention(ctx.OnCpu(q, n, h * D), ctx.OnCpu(k, n, kv * D), ctx.OnCpu(v, n, kv * D), h, kv, mask, co, null);
            var want = Down(ctx.Cpu, co);
            foreach (var variant in Variants(ctx))
            {
                With(ctx, variant, () => ctx.Gpu.Attention(gq, gk, gv, h, kv, mask, go, null));
                // hopper-qk8 rounds q and k to e4m3: against the unrounded reference a sanity bound only (the GPU tests
                // check it against its rounded inputs at the bf16 kernel's tolerance).
                ctx.Expect($"{variant} {MaskName(mask)} N={n} h={h}/{kv} d={D}", Down(ctx.Gpu, go), want, variant == Qk8 ? 1e-1 : 2e-2);
            }
        }
    }

    public override IEnumerable<KernelRow> Time(KernelBenchContext ctx, int n)
    {
        var gpu = ctx.Gpu;
        int extra = ctx.Settings.ExtraKeys;
        bool genericAsked = ctx.Settings.Variants?.Contains("generic") == true;
        foreach (var mask in Masks(ctx))
        {
            using var q = ctx.DeviceRandom(n, Heads * D); using var k = ctx.DeviceRandom(n + extra, KvHeads * D); using var v = ctx.DeviceRandom(n + extra, KvHeads * D);
            using var o = gpu.Allocate(n, Heads * D, CudaDType.BF16); using var l = gpu.AllocateF32(n, Heads);
            bool causal = mask == AttentionMask.Causal;
            double pairs = causal ? (double)n * extra + (double)n * n / 2 : (double)n * (n + extra);
            string pairText = causal ? $"{n}^2/2{(extra > 0 ? $" + {n} x {extra}" : "")}" : $"{n} x {n + extra}";
            var work = new Work(Bound.Compute, 4.0 * D * Heads * pairs, $"4 x d {D} x {Heads} heads x {pairText} pairs");
            string shape = $"N={n}{(extra > 0 ? $" +{extra} keys" : "")} h={Heads}/{KvHeads} d={D} {MaskName(mask)}";
            foreach (var variant in Variants(ctx))
            {
                var kernel = Kernel(gpu, variant);
                var resolved = CudaBackend.ChooseAttentionKernel(kernel, n, D, aligned: true, gpu.HopperAttentionAvailable);
                if (resolved == AttentionKernel.Generic && n > GenericMaxDefault && !genericAsked)
                {
                    ctx.Log.WriteLine($"  generic {shape}: not timed (minutes per call above N={GenericMaxDefault}; ask with --variants generic)");
                    continue;
                }
                int repeats = resolved == AttentionKernel.Generic ? 3 : n >= 65536 ? 5 : 20;
                Timing.TimingStats? time = null;
                With(ctx, variant, () => time = ctx.TimeGpu(() => gpu.Attention(q, k, v, Heads, KvHeads, mask, o, l), repeats));
                string label = variant == "auto" ? $"auto ({AttentionKernels.Name(resolved)})" : variant;
                yield return new KernelRow(Name, label, shape, n, time!, work);
            }
        }
    }
}
