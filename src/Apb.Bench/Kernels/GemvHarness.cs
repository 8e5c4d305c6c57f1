using Apb.Backends;
using Apb.Backends.Cuda;
using static Apb.Bench.Kernels.KernelBenchContext;

namespace Apb.Bench.Kernels;

/// <summary>
/// The products of a decode step at the Llama-3.1-8B shapes, M rows (sequences) at a time: q/k/v in one call
/// (<see cref="IBackend.Linears"/>), o_proj, gate/up with SiLU (<see cref="IBackend.GatedLinear"/>), down_proj and the LM
/// head. Variant "gemv" is Kernels/gemv.cu (what CudaBackend runs for M &lt;= 2 by default; it takes up to 4), "cublaslt" the same calls with the
/// matrix-vector kernels off (cuBLASLt per product, and apb_silu_mul). Bound by the weights' bytes: against HBM.
/// </summary>
public sealed class GemvHarness : KernelHarness
{
    const int Hidden = 4096, Kv = 1024, Ffn = 14336, Vocab = 128256;

    public override string Name => "gemv";
    public override string Summary => "decode-step products (q/k/v, o, gate/up + SiLU, down, LM head) of Llama-3.1-8B, gemv.cu vs cuBLASLt";
    public override string SizeMeaning => $"rows M (sequences in the step, 1 to {CudaBackend.GemvRowLimit} for gemv.cu)";
    public override int[] DefaultSizes => [1, 2, 4];
    public override bool HasVariants => true;

    static readonly string[] s_variants = ["gemv", "cublaslt"];

    public override void Check(KernelBenchContext ctx)
    {
        // Every M gemv.cu takes, whatever the default limit (CudaBackend.GemvDefaultRows) sends to it.
        int saved = ctx.Gpu.GemvMaxRows;
        ctx.Gpu.GemvMaxRows = CudaBackend.GemvRowLimit;
        try { CheckEachRowCount(ctx); }
        finally { ctx.Gpu.GemvMaxRows = saved; }
    }

    static void CheckEachRowCount(KernelBenchContext ctx)
    {
        const int k = 1024, n = 296, n2 = 72;
        for (int m = 1; m <= CudaBackend.GemvRowLimit; m++)
        {
            var x = ctx.HostValues((long)m * k);
            var (cw, gw) = ctx.Weight("w", ctx.HostValues((long)n * k, 1f / MathF.Sqrt(k)), n, k);
            var (cw2, gw2) = ctx.Weight("w2", ctx.HostValues((long)n2 * k, 1f / MathF.Sqrt(k)), n2, k);
            var (cb, gb) = ctx.Weight("b", ctx.HostValues(n), 1, n);
            var cx = ctx.OnCpu(x, m, k);
            using var gx = ctx.OnGpu(x, m, k);

            var co = ctx.Cpu.Allocate(m, n); var co2 = ctx.Cpu.Allocate(m, n2); var co3 = ctx.Cpu.Allocate(m, n);
            ((IBackend)ctx.Cpu).Linears(cx, [new(cw, cb, co), new(cw2, null, co2), new(cw, null, co3)]);
            using var go = ctx.Gpu.Allocate(m, n, CudaDType.BF16); using var go2 = ctx.Gpu.Allocate(m, n2, CudaDType.BF16);
            using var go3 = ctx.Gpu.Allocate(m, n, CudaDType.BF16);
            ctx.Gpu.Linears(gx, [new(gw, gb, go), new(gw2, null, go2), new(gw, null, go3)]);
            ctx.Expect($"linears M={m}: first (bias)", Down(ctx.Gpu, go), Down(ctx.Cpu, co), 1e-2);
            ctx.Expect($"linears M={m}: second", Down(ctx.Gpu, go2), Down(ctx.Cpu, co2), 1e-2);
            ctx.Expect($"linears M={m}: third", Down(ctx.Gpu, go3), Down(ctx.Cpu, co3), 1e-2);

            ctx.Cpu.Linear(cx, cw2, null, co2);
            ctx.Gpu.Linear(gx, gw2, null, go2);
            ctx.Expect($"linear M={m}", Down(ctx.Gpu, go2), Down(ctx.Cpu, co2), 1e-2);

            var (cu, gu) = ctx.Weight("up", ctx.HostValues((long)n * k, 1f / MathF.Sqrt(k)), n, k);
            var cScratch = ctx.Cpu.Allocate(m, n);
            ((IBackend)ctx.Cpu).GatedLinear(cx, cw, cb, cu, null, cScratch, co);
            using var gScratch = ctx.Gpu.Allocate(m, n, CudaDType.BF16);
            ctx.Gpu.GatedLinear(gx, gw, gb, gu, null, gScratch, go);
            ctx.Expect($"gated linear M={m}", Down(ctx.Gpu, go), Down(ctx.Cpu, co), 2e-2);
        }
    }

    public override IEnumerable<KernelRow> Time(KernelBenchContext ctx, int m)
    {
        if (m < 1 || m > CudaBackend.GemvRowLimit)
            throw new ApbException($"bench kernel gemv: M={m}; gemv.cu takes 1 to {CudaBackend.GemvRowLimit} rows");
        var gpu = ctx.Gpu;
        var variants = Pick(ctx, s_variants, s_variants);
        IWeight W(string name, int rows, int cols, ulong i) => gpu.LoadRandom(name, rows, cols, RandomValues.Key(11, i), 1f / MathF.Sqrt(cols), 0f);
        var q = W("q", Hidden, Hidden, 1); var kw = W("k", Kv, Hidden, 2); var v = W("v", Kv, Hidden, 3);
        var o = W("o", Hidden, Hidden, 4); var gate = W("gate", Ffn, Hidden, 5); var up = W("up", Ffn, Hidden, 6);
        var down = W("down", Hidden, Ffn, 7); var head = W("lm_head", Vocab, Hidden, 8);
        using var x = ctx.DeviceRandom(m, Hidden); using var xf = ctx.DeviceRandom(m, Ffn, 0.1f);
        using var yq = gpu.Allocate(m, Hidden, CudaDType.BF16); using var yk = gpu.Allocate(m, Kv, CudaDType.BF16);
        using var yv = gpu.Allocate(m, Kv, CudaDType.BF16); using var yo = gpu.Allocate(m, Hidden, CudaDType.BF16);
        using var yg = gpu.Allocate(m, Ffn, CudaDType.BF16); using var yu = gpu.Allocate(m, Ffn, CudaDType.BF16);
        using var yh = gpu.Allocate(m, Vocab, CudaDType.BF16);

        var calls = new (string Name, Action Run, long Weights, string Formula)[]
        {
            ("q/k/v", () => gpu.Linears(x, [new(q, null, yq), new(kw, null, yk), new(v, null, yv)]), (long)(Hidden + 2 * Kv) * Hidden, $"({Hidden} + 2 x {Kv}) x {Hidden}"),
            ("o_proj", () => gpu.Linear(x, o, null, yo), (long)Hidden * Hidden, $"{Hidden} x {Hidden}"),
            ("gate/up + silu", () => gpu.GatedLinear(x, gate, null, up, null, yu, yg), 2L * Ffn * Hidden, $"2 x {Ffn} x {Hidden}"),
            ("down_proj", () => gpu.Linear(xf, down, null, yo), (long)Hidden * Ffn, $"{Hidden} x {Ffn}"),
            ("lm_head", () => gpu.Linear(x, head, null, yh), (long)Vocab * Hidden, $"{Vocab} x {Hidden}"),
        };
        int saved = gpu.GemvMaxRows;
        try
        {
            foreach (var (name, run, weights, formula) in calls)
                foreach (var variant in variants)
                {
                    gpu.GemvMaxRows = variant == "gemv" ? CudaBackend.GemvRowLimit : 0;
                    var time = ctx.TimeGpu(run, 50);
                    yield return new KernelRow(name, variant, $"M={m}, W {formula} bf16", m, time,
                        new Work(Bound.Memory, 2.0 * weights, $"weights {formula} x 2 B", 2.0 * m * weights));
                }
        }
        finally
        {
            gpu.GemvMaxRows = saved;
        }
    }
}
