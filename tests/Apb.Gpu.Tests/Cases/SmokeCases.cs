using Apb.Backends;
using Apb.Backends.Cuda;
using static Apb.Gpu.Tests.GpuCheck;

namespace Apb.Gpu.Tests;

/// <summary>
/// The first case a developer with a GPU should see fail: the tensor-core kernels (mma.sync, and Hopper's wgmma where the
/// device is sm_90) on one model-like GQA shape, uniform inputs, against the CPU within a plain 1e-2 norm-relative error.
/// </summary>
public static class SmokeCases
{
    public static IEnumerable<GpuCase> All()
    {
        yield return new("smoke", "tensor-core attention Tq=100 Tk=230 h=8/2 d=128 causal", TensorCoreAttention);
    }

    static void TensorCoreAttention(GpuCheck c)
    {
        const int tq = 100, tk = 230, heads = 8, kv = 2, d = 128;
        float[] Uniform(int n) => Enumerable.Range(0, n).Select(_ => Bf16((float)(c.Rng.NextDouble() * 2 - 1))).ToArray();
        var q = Uniform(tq * heads * d); var k = Uniform(tk * kv * d); var v = Uniform(tk * kv * d);
        var co = c.Cpu.Allocate(tq, heads * d);
        c.Cpu.Attention(c.OnCpu(q, tq, heads * d), c.OnCpu(k, tk, kv * d), c.OnCpu(v, tk, kv * d), heads, kv, AttentionMask.Causal, co, null);
        var want = Down(c.Cpu, co);
        var gq = c.OnGpu(q, tq, heads * d); var gk = c.OnGpu(k, tk, kv * d); var gv = c.OnGpu(v, tk, kv * d);
        var kernels = c.Gpu.HopperAttentionAvailable ? new[] { AttentionKernel.TensorCore, AttentionKernel.Hopper } : [AttentionKernel.TensorCore];
        foreach (var kernel in kernels)
        {
            var go = c.Poisoned(tq, heads * d);
            c.WithKernel(kernel, () => c.Gpu.Attention(gq, gk, gv, heads, kv, AttentionMask.Causal, go, null));
            c.Compare("out", Down(c.Gpu, go), want, 1e-2, AttentionKernels.Name(kernel));
        }
    }
}
