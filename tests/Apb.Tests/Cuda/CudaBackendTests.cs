using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Backends.Cuda;
using Apb.Checkpoints;
using Apb.Engine;
using Apb.Model;
using Apb.Runtime;
using Xunit;

namespace Apb.Tests.Cuda;

/// <summary>
/// The CUDA backend against the CPU reference, on a GPU only (skipped elsewhere). The full grid lives in
/// `apb check-kernels`; these are the few cases a developer with a GPU should see fail first.
/// </summary>
public class CudaBackendTests
{
    static float[] Rand(Random rng, int n) =>
        Enumerable.Range(0, n).Select(_ => DTypes.BF16ToFloat(DTypes.FloatToBF16((float)(rng.NextDouble() * 2 - 1)))).ToArray();

    static double RelErr(float[] a, float[] b)
    {
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++) { double d = a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
        return Math.Sqrt(num / den);
    }

    [GpuFact]
    public void TensorCoreAttentionMatchesCpu()
    {
        using var gpu = new CudaBackend();
        // Every tensor-core kernel this GPU runs: the Hopper (wgmma + TMA) kernel only where the device is sm_90.
        var kernels = new List<AttentionKernel> { AttentionKernel.TensorCore };
        if (gpu.HopperAttentionAvailable) kernels.Add(AttentionKernel.Hopper);
        foreach (var kernel in kernels) AttentionMatchesCpu(gpu, kernel);
    }

    static void AttentionMatchesCpu(CudaBackend gpu, AttentionKernel kernel)
    {
        var rng = new Random(7);
        int tq = 100, tk = 230, heads = 8, kv = 2, d = 128;
        var q = Rand(rng, tq * heads * d); var k = Rand(rng, tk * kv * d); var v = Rand(rng, tk * kv * d);
        var cpu = new CpuBackend();
        Tensor Up(IBackend b, float[] x, int r, int c) { var t = b.Allocate(r, c); b.Upload(x, t); return t; }
        var co = cpu.Allocate(tq, heads * d);
        cpu.Attention(Up(cpu, q, tq, heads * d), Up(cpu, k, tk, kv * d), Up(cpu, v, tk, kv * d), heads, kv, AttentionMask.Causal, co, null);
        var go = gpu.Allocate(tq, heads * d);
        var nan = new float[tq * heads * d];
        Array.Fill(nan, float.NaN);
        gpu.Upload(nan, go); // an element the kernel does not write stays NaN
        gpu.Attention(Up(gpu, q, tq, heads * d), Up(gpu, k, tk, kv * d), Up(gpu, v, tk, kv * d), heads, kv, AttentionMask.Causal, go, null, kernel);
        var want = new float[tq * heads * d]; var got = new float[want.Length];
        cpu.Download(co, want); gpu.Download(go, got);
        Assert.DoesNotContain(got, float.IsNaN);
        Assert.True(RelErr(got, want) < 1e-2, $"{kernel}: relative error {RelErr(got, want):E3}");
    }

    [GpuFact]
    public void FixtureLogitsMatchCpuInBf16()
    {
        string dir = Repo.Fixture("llama-tiny");
        var fx = Model.ReferenceFixture.Load(dir);
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        using var ckpt = CheckpointWeights.Open(dir);
        using var gpu = new CudaBackend();
        var want = new LocalSession(LlamaModel.Load(config, ckpt, new CpuBackend()), fx.PromptIds.Length).AllLogits(fx.PromptIds);
        var got = new LocalSession(LlamaModel.Load(config, ckpt, gpu), fx.PromptIds.Length).AllLogits(fx.PromptIds);
        Assert.True(RelErr(got, want) < 5e-2, $"relative error {RelErr(got, want):E3}");
    }
}
