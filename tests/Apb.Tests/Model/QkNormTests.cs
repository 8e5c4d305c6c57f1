using System.Text.Json.Nodes;
using Apb.Backends.Cpu;
using Apb.Checkpoints;
using Apb.Model;
using Apb.Runtime;
using Apb.Tests.Checkpoints;
using Xunit;

namespace Apb.Tests.Model;

/// <summary>
/// Qwen3's q_norm / k_norm: an RMSNorm of each head of q and k over head_dim, run as the ordinary row-wise RMSNorm on a
/// [T x heads, head_dim] view. Checked on the view itself, by the property that defines it (q and k become independent
/// of their projections' scale), and by the load errors of a checkpoint that lacks or has extra norms.
/// </summary>
public class QkNormTests : IDisposable
{
    readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    [Fact]
    public void RmsNormOnAHeadViewNormalizesEachHead()
    {
        const int t = 5, heads = 3, d = 8;
        var b = new CpuBackend();
        var x = new CpuTensor(t, heads * d);
        var rng = new Random(1);
        foreach (ref float v in x.Span) v = (float)(rng.NextDouble() * 4 - 2);
        var want = x.Span.ToArray();
        var gamma = Enumerable.Range(0, d).Select(i => 0.5f + i / 8f).ToArray();
        for (int row = 0; row < t * heads; row++)
        {
            var head = want.AsSpan(row * d, d);
            double ms = 0;
            foreach (float v in head) ms += (double)v * v;
            double inv = 1 / Math.Sqrt(ms / d + 1e-6);
            for (int i = 0; i < d; i++) head[i] = (float)(head[i] * inv * gamma[i]);
        }
        var view = x.View(t * heads, d);
        Assert.Equal((t * heads, d), (view.Rows, view.Cols));
        b.RmsNorm(view, b.Load(TestWeights.Vector("q_norm", gamma)), 1e-6f, view); // in place
        Assert.True(ReferenceFixture.RelativeError(x.Span, want) < 1e-6);
    }

    [Theory]
    [InlineData(7, 3)]
    [InlineData(0, 1)]
    public void ViewMustKeepTheElementCount(int rows, int cols)
    {
        var x = new CpuTensor(2, 8);
        Assert.Throws<ArgumentException>(() => x.View(rows, cols));
    }

    /// <summary>
    /// llama-tiny (f32, no biases) relabelled Qwen3ForCausalLM, with random q_norm / k_norm weights added, and q_proj /
    /// k_proj optionally multiplied by <paramref name="scale"/>.
    /// </summary>
    string Qwen3FromLlamaTiny(string arch, bool norms, float scale)
    {
        string dir = Path.Combine(_tmp.Path, $"{arch}-{norms}-{scale}");
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(Repo.Fixture("llama-tiny"))) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        JsonFiles.Edit(Path.Combine(dir, "config.json"), c => c["architectures"] = new JsonArray(arch));
        var config = ModelConfig.Load(Path.Combine(Repo.Fixture("llama-tiny"), "config.json"));
        var rng = new Random(7);
        SafeTensorsWriter.Rewrite(Path.Combine(dir, "model.safetensors"), tensors =>
        {
            var result = new List<TestTensor>();
            foreach (var t in tensors)
            {
                bool qk = t.Name.EndsWith("self_attn.q_proj.weight", StringComparison.Ordinal) || t.Name.EndsWith("self_attn.k_proj.weight", StringComparison.Ordinal);
                result.Add(qk ? t with { Data = TestWeights.Scaled(t.Data, scale) } : t);
                if (norms && t.Name.EndsWith("self_attn.o_proj.weight", StringComparison.Ordinal))
                {
                    string layer = t.Name[..^"o_proj.weight".Length];
                    foreach (var n in new[] { "q_norm.weight", "k_norm.weight" })
                        result.Add(new TestTensor(layer + n, "F32", [config.HeadDim],
                            TestWeights.F32Bytes(Enumerable.Range(0, config.HeadDim).Select(_ => 1f + 0.3f * (float)(rng.NextDouble() - 0.5)).ToArray())));
                }
            }
            return result;
        });
        return dir;
    }

    static float[] Logits(string dir, int[] ids)
    {
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        using var ckpt = CheckpointWeights.Open(dir);
        using var s = new LocalSession(LlamaModel.Load(config, ckpt, new CpuBackend()), ids.Length);
        return s.AllLogits(ids);
    }

    [Fact]
    public void QkNormsMakeAttentionIndependentOfTheProjectionScale()
    {
        var ids = ReferenceFixture.Load(Repo.Fixture("llama-tiny")).PromptIds[..40];
        // With the norms, q and k are normalized before RoPE: scaling their projections by 3 changes nothing (but eps).
        var a = Logits(Qwen3FromLlamaTiny("Qwen3ForCausalLM", norms: true, scale: 1), ids);
        var b = Logits(Qwen3FromLlamaTiny("Qwen3ForCausalLM", norms: true, scale: 3), ids);
        double same = ReferenceFixture.RelativeError(b, a);
        Assert.True(same < 1e-4, $"q/k norms on: scaling q_proj and k_proj changed the logits by {same:E2}");
        // Without them the same scaling sharpens every softmax: the logits move.
        var c = Logits(Qwen3FromLlamaTiny("LlamaForCausalLM", norms: false, scale: 1), ids);
        var d = Logits(Qwen3FromLlamaTiny("LlamaForCausalLM", norms: false, scale: 3), ids);
        double moved = ReferenceFixture.RelativeError(d, c);
        Assert.True(moved > 1e-2, $"q/k norms off: scaling q_proj and k_proj changed the logits by only {moved:E2}");
        // And the norms are a step of their own: Qwen3 with them is not Llama without them.
        Assert.True(ReferenceFixture.RelativeError(a, c) > 1e-2);
    }

    [Fact]
    public void Qwen3WithoutNormsNamesTheMissingTensor() =>
        Expect.Error(() =>
        {
            string dir = Qwen3FromLlamaTiny("Qwen3ForCausalLM", norms: false, scale: 1);
            using var ckpt = CheckpointWeights.Open(dir);
            LlamaWeights.Load(ModelConfig.Load(Path.Combine(dir, "config.json")), ckpt, new CpuBackend());
        }, "tensor 'model.layers.0.self_attn.q_norm.weight' is missing", "expected shape [16] (head_dim)", "Qwen3ForCausalLM normalizes q and k per head");

    [Fact]
    public void LlamaWithNormsSaysWhoseTheyAre() =>
        Expect.Error(() =>
        {
            string dir = Qwen3FromLlamaTiny("LlamaForCausalLM", norms: true, scale: 1);
            using var ckpt = CheckpointWeights.Open(dir);
            LlamaWeights.Load(ModelConfig.Load(Path.Combine(dir, "config.json")), ckpt, new CpuBackend());
        }, "are not part of LlamaForCausalLM", "self_attn.k_norm.weight", "q_norm / k_norm are Qwen3ForCausalLM's");
}

/// <summary>Small weights for tests: fp32 vectors in host memory and safetensors bytes.</summary>
static class TestWeights
{
    public static byte[] F32Bytes(float[] values)
    {
        var bytes = new byte[values.Length * 4];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        return bytes;
    }

    public static byte[] Scaled(byte[] f32, float scale)
    {
        var v = new float[f32.Length / 4];
        Buffer.BlockCopy(f32, 0, v, 0, f32.Length);
        for (int i = 0; i < v.Length; i++) v[i] *= scale;
        return F32Bytes(v);
    }

    /// <summary>A vector weight in native memory kept for the process's life (the CPU backend reads weights in place).</summary>
    public static unsafe WeightView Vector(string name, float[] values) => Matrix(name, values, [values.Length]);

    public static unsafe WeightView Matrix(string name, float[] values, long[] shape)
    {
        var p = (byte*)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)(values.Length * 4L));
        values.AsSpan().CopyTo(new Span<float>(p, values.Length));
        return new WeightView(name, DType.F32, shape, p);
    }
}
