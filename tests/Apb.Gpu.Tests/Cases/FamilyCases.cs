using Apb.Backends;
using Apb.Backends.Cuda;
using Apb.Checkpoints;
using Apb.Engine;
using Apb.Model;
using Apb.Runtime;
using static Apb.Gpu.Tests.GpuCheck;

namespace Apb.Gpu.Tests;

/// <summary>
/// The CUDA paths the Qwen3 / Mistral / long-context rope families added, each against the CPU backend: RMSNorm in place
/// on a [T x heads, head_dim] view (Qwen3's q/k norms), RoPE with YaRN's attention scaling and a dynamic-NTK table
/// (frequencies uploaded with each call), the generic kernel's sliding window (and the other kernels refusing one), and
/// random-weight models of both families at head_dim 128, prefill and decode (the fixture models run in ModelCases).
/// </summary>
public static class FamilyCases
{
    public static IEnumerable<GpuCase> All()
    {
        foreach (var (t, heads, d) in new[] { (33, 8, 128), (5, 4, 16), (300, 2, 64) })
            yield return new("ops", $"rms_norm in place on a head view [{t} x {heads}, {d}]", c => HeadNorm(c, t, heads, d));
        yield return new("ops", "rope yarn (factor 4, attention factor) 8 heads x d=128, positions < 128K random", Yarn);
        yield return new("ops", "rope dynamic NTK table for a 100K call (max positions 32K) 8 heads x d=128", Dynamic);

        foreach (var (tq, tk, window, heads, kv, d) in new[]
        {
            (1, 300, 64, 8, 2, 128), (77, 77, 16, 8, 2, 128), (129, 300, 100, 8, 2, 128), (300, 300, 1, 8, 2, 128),
            (600, 1000, 256, 8, 2, 128), (77, 77, 16, 4, 2, 16), (200, 200, 24, 4, 2, 16),
        })
            yield return new("attention", $"Tq={tq} Tk={tk} h={heads}/{kv} d={d} causal, sliding window {window}",
                c => Windowed(c, tq, tk, window, heads, kv, d));
        yield return new("attention", "sliding window refused by the tensor-core, Hopper and split-KV kernels", WindowRefused);

        yield return new("models", "random Mistral-shape model (d=128, sliding window 40): 150 positions, 8 decode steps",
            c => RandomModel(c, ModelShapes.Get("small") with { Architecture = "MistralForCausalLM", SlidingWindow = 40 }));
        yield return new("models", "random Qwen3-shape model (d=128, q/k norms): 150 positions, 8 decode steps",
            c => RandomModel(c, ModelShapes.Get("small") with { Architecture = "Qwen3ForCausalLM", QkNorm = true }));
    }

    static void HeadNorm(GpuCheck c, int t, int heads, int d)
    {
        var x = c.Rand((long)t * heads * d, 3f);
        var w = c.Weight("q_norm", c.Rand(d), [d], DType.BF16);
        var cx = c.OnCpu(x, t, heads * d); var cv = cx.View(t * heads, d);
        c.Cpu.RmsNorm(cv, c.Cpu.Load(w), 1e-6f, cv);
        var gx = c.OnGpu(x, t, heads * d); var gv = gx.View(t * heads, d);
        c.Gpu.RmsNorm(gv, c.Gpu.Load(w), 1e-6f, gv);
        c.Compare("rms_norm in place", Down(c.Gpu, gx), Down(c.Cpu, cx), Bf16Tolerance);
    }

    static void Rope(GpuCheck c, RopeTable table, int[] positions)
    {
        const int heads = 8;
        int d = table.HeadDim, t = positions.Length;
        var x = c.Rand((long)t * heads * d);
        var cx = c.OnCpu(x, t, heads * d); c.Cpu.Rope(cx, heads, positions, table);
        var gx = c.OnGpu(x, t, heads * d); c.Gpu.Rope(gx, heads, positions, table);
        c.Compare("rope", Down(c.Gpu, gx), Down(c.Cpu, cx), Bf16Tolerance);
    }

    static void Yarn(GpuCheck c)
    {
        var table = new RopeTable(new RopeConfig(RopeType.Yarn, 1_000_000, Factor: 4, OriginalMaxPositions: 32768, AttentionFactor: 0.1 * Math.Log(4) + 1), 128);
        Rope(c, table, Enumerable.Range(0, 29).Select(_ => c.Rng.Next(131072)).ToArray());
    }

    static void Dynamic(GpuCheck c)
    {
        var table = new RopeTable(new RopeConfig(RopeType.Dynamic, 500000, Factor: 4, OriginalMaxPositions: 32768), 128).ForLength(100_000);
        Rope(c, table, Enumerable.Range(0, 29).Select(_ => c.Rng.Next(100_000)).ToArray());
    }

    static void Windowed(GpuCheck c, int tq, int tk, int window, int heads, int kv, int d)
    {
        var r = AttentionReference.Make(c, tq, tk, heads, kv, d, causal: true, window);
        var gq = c.OnGpu(r.Q, tq, heads * d); var gk = c.OnGpu(r.K, tk, kv * d); var gv = c.OnGpu(r.V, tk, kv * d);
        // Auto must pick the generic kernel, the only one with a window; forcing it gives the same.
        foreach (var kernel in new[] { AttentionKernel.Auto, AttentionKernel.Generic })
        {
            var go = c.Poisoned(tq, heads * d); var gl = c.Poisoned(tq, heads, CudaDType.F32);
            c.WithKernel(kernel, () => c.Gpu.Attention(gq, gk, gv, heads, kv, AttentionMask.Causal, go, gl, window));
            string name = AttentionKernels.Name(kernel);
            c.Compare("out", Down(c.Gpu, go), r.RefO, r.OutLimit, name);
            c.CompareLse("lse", Down(c.Gpu, gl), r.RefL, r.LseLimit, name);
        }
    }

    static void WindowRefused(GpuCheck c)
    {
        const int heads = 8, kv = 2, d = 128;
        foreach (var (kernel, tq) in new[] { (AttentionKernel.TensorCore, 100), (AttentionKernel.Hopper, 100), (AttentionKernel.SplitKv, 1) })
        {
            var q = c.OnGpu(c.Rand((long)tq * heads * d), tq, heads * d); var k = c.OnGpu(c.Rand(100L * kv * d), 100, kv * d);
            string? message = null;
            try { c.WithKernel(kernel, () => c.Gpu.Attention(q, k, k, heads, kv, AttentionMask.Causal, c.Poisoned(tq, heads * d), null, 16)); }
            catch (ArgumentException e) { message = e.Message; }
            bool refused = message?.Contains("sliding window", StringComparison.Ordinal) == true;
            c.Record($"forced {AttentionKernels.Name(kernel)} with a window refused", refused ? 0 : 1, 0, refused,
                message ?? "ran without an error: the kernel would have ignored the window");
        }
    }

    static void RandomModel(GpuCheck c, ModelConfig config)
    {
        var cpu = new LlamaModel(config, RandomWeights.Create(config, c.Cpu), c.Cpu);
        var gpu = new LlamaModel(config, RandomWeights.Create(config, c.Gpu), c.Gpu);
        var prompt = Enumerable.Range(0, 150).Select(_ => c.Rng.Next(config.VocabSize)).ToArray();
        float[] want, got;
        using (var s = new LocalSession(cpu, prompt.Length)) want = s.AllLogits(prompt);
        using (var s = new LocalSession(gpu, prompt.Length)) got = s.AllLogits(prompt);
        c.Compare($"logits of {prompt.Length} positions", got, want, 5e-2, AttentionKernels.Name(c.Gpu.AttentionKernel));

        // Decode: each step's keys are its window (a slice of the cache), so the fast decode kernel runs.
        using var sc = new LocalSession(cpu, prompt.Length + 8);
        using var sg = new LocalSession(gpu, prompt.Length + 8);
        var lc = sc.Prefill(prompt, []); var lg = sg.Prefill(prompt, []);
        double worst = 0;
        for (int i = 0; i < 8; i++)
        {
            worst = Math.Max(worst, RelErr(lg, lc));
            int next = Sampler.ArgMax(lc);
            lc = sc.Decode(next); lg = sg.Decode(next);
        }
        c.Record("decode logits, worst of 8 steps (same tokens fed to both)", worst, 5e-2, worst < 5e-2);
        cpu.Dispose(); gpu.Dispose();
    }
}
