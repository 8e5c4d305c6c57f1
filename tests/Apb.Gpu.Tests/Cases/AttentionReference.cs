using System.Numerics.Tensors;
using Apb.Backends;
using static Apb.Gpu.Tests.GpuCheck;

namespace Apb.Gpu.Tests;

/// <summary>
/// Random non-zero q/k/v of one attention shape, the fp32 CPU reference (output, LSE), and the errors a plain bf16
/// implementation makes against it. FlashAttention's tolerance rule: a kernel may be off by at most twice that naive
/// error, plus a small floor; that separates a bug from rounding.
/// </summary>
public sealed record AttentionReference(float[] Q, float[] K, float[] V, float[] RefO, float[] RefL, double NaiveErr, double NaiveLse)
{
    const double Floor = 1e-3;

    public double OutLimit => 2 * NaiveErr + Floor;
    public double LseLimit => 2 * NaiveLse + Floor;

    /// <param name="window">a sliding window (causal only; 0: none), as <see cref="IBackend.Attention"/> takes it</param>
    /// <param name="keyRamp">0, or key j scaled by 1 + keyRamp x j / tk, so that the scores grow along the keys</param>
    public static AttentionReference Make(GpuCheck c, int tq, int tk, int heads, int kv, int d, bool causal, int window = 0, float keyRamp = 0f)
    {
        var q = c.Rand((long)tq * heads * d, 1.5f); var k = c.Rand((long)tk * kv * d, 1.5f); var v = c.Rand((long)tk * kv * d);
        if (keyRamp != 0f)
            for (int j = 0; j < tk; j++)
            {
                var row = k.AsSpan(j * kv * d, kv * d);
                float f = 1f + keyRamp * j / tk;
                for (int e = 0; e < row.Length; e++) row[e] = Bf16(row[e] * f);
            }
        return Of(c, q, k, v, tq, tk, heads, kv, d, causal, window);
    }

    /// <summary><see cref="Make"/> for given q, k and v (e.g. the values an fp8 cache stands for).</summary>
    public static AttentionReference Of(GpuCheck c, float[] q, float[] k, float[] v, int tq, int tk, int heads, int kv, int d, bool causal, int window = 0)
    {
        var mask = causal ? AttentionMask.Causal : AttentionMask.None;
        var co = c.Cpu.Allocate(tq, heads * d); var cl = c.Cpu.Allocate(tq, heads);
        c.Cpu.Attention(c.OnCpu(q, tq, heads * d), c.OnCpu(k, tk, kv * d), c.OnCpu(v, tk, kv * d), heads, kv, mask, co, cl, window);
        var refO = Down(c.Cpu, co); var refL = Down(c.Cpu, cl);
        var (naiveO, naiveL) = NaiveBf16(q, k, v, tq, tk, heads, kv, d, causal, window);
        double naiveLse = 0;
        for (int i = 0; i < refL.Length; i++)
            if (!float.IsNegativeInfinity(refL[i])) naiveLse = Math.Max(naiveLse, Math.Abs(naiveL[i] - refL[i]));
        return new AttentionReference(q, k, v, refO, refL, RelErr(naiveO, refO), naiveLse);
    }

    /// <summary>
    /// What a plain bf16 implementation computes (FlashAttention's attention_ref without upcast): q pre-scaled and
    /// rounded, scores rounded to bf16, softmax in fp32 rounded to bf16, P V accumulated in fp32 and rounded.
    /// </summary>
    static (float[] O, float[] Lse) NaiveBf16(float[] q, float[] k, float[] v, int tq, int tk, int heads, int kv, int d, bool causal, int window)
    {
        var o = new float[(long)tq * heads * d];
        var lse = new float[(long)tq * heads];
        float scale = 1f / MathF.Sqrt(d);
        int group = heads / kv;
        Parallel.For(0, tq * heads, task =>
        {
            int i = task / heads, h = task % heads, kh = h / group;
            int visible = causal ? Math.Clamp(i + tk - tq + 1, 0, tk) : tk;
            int first = window > 0 ? Math.Max(visible - window, 0) : 0;
            var oi = o.AsSpan((i * heads + h) * d, d);
            if (visible == 0) { oi.Clear(); lse[i * heads + h] = float.NegativeInfinity; return; }
            var qi = new float[d];
            for (int ch = 0; ch < d; ch++) qi[ch] = Bf16(q[(long)(i * heads + h) * d + ch] * scale);
            var s = new float[visible];
            float max = float.NegativeInfinity;
            for (int j = first; j < visible; j++)
            {
                s[j] = Bf16(TensorPrimitives.Dot(qi, k.AsSpan((j * kv + kh) * d, d)));
                max = Math.Max(max, s[j]);
            }
            double sum = 0;
            for (int j = first; j < visible; j++) sum += Math.Exp(s[j] - max);
            lse[i * heads + h] = (float)(max + Math.Log(sum));
            var acc = new float[d];
            for (int j = first; j < visible; j++)
            {
                float p = Bf16((float)(Math.Exp(s[j] - max) / sum));
                TensorPrimitives.MultiplyAdd(v.AsSpan((j * kv + kh) * d, d), p, acc, acc);
            }
            for (int ch = 0; ch < d; ch++) oi[ch] = Bf16(acc[ch]);
        });
        return (o, lse);
    }
}
