using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Apb.Backends.Cpu;

/// <summary>
/// Exact attention, the readable reference: for every (query row, head) the scores of all visible keys, softmax with the
/// max subtracted, then the weighted sum of values. fp32 throughout; O(Tq x Tk) memory per thread is one score row.
/// </summary>
static unsafe class CpuAttention
{
    [ThreadStatic] static float[]? t_scores;

    public static void Run(CpuTensor q, CpuTensor k, CpuTensor v, int heads, int kvHeads, AttentionMask mask,
        CpuTensor output, CpuTensor? lse)
    {
        int Tq = q.Rows, Tk = k.Rows, d = q.Cols / heads, group = heads / kvHeads;
        float scale = 1.0f / MathF.Sqrt(d);
        int shift = Tk - Tq; // bottom-right alignment
        const int RowsPerTask = 16;
        int blocks = (Tq + RowsPerTask - 1) / RowsPerTask;
        Parallel.For(0, heads * blocks, task =>
        {
            int h = task % heads, i0 = (task / heads) * RowsPerTask, kh = h / group;
            var scores = t_scores is { } s && s.Length >= Tk ? s : (t_scores = new float[Math.Max(Tk, 16)]);
            for (int i = i0; i < Math.Min(i0 + RowsPerTask, Tq); i++)
            {
                var qi = q.Row(i).Slice(h * d, d);
                var oi = output.Row(i).Slice(h * d, d);
                int visible = mask == AttentionMask.Causal ? Math.Clamp(i + shift + 1, 0, Tk) : Tk;
                if (visible == 0)
                {
                    oi.Clear();
                    if (lse != null) lse.Row(i)[h] = float.NegativeInfinity;
                    continue;
                }
                var sc = scores.AsSpan(0, visible);
                fixed (float* qp = qi, kp = k.Row(0), vp = v.Row(0), op = oi, sp = sc)
                {
                    // One pass of dot products, softmax over the row, one pass of weighted value sums: the inner
                    // loops are written out (no per-key library call) because they run Tq x Tk x heads times.
                    float* kh0 = kp + kh * d, vh0 = vp + kh * d;
                    for (int j = 0; j < visible; j++) sp[j] = Dot(qp, kh0 + (long)j * k.Cols, d) * scale;
                    float m = TensorPrimitives.Max(sc);
                    TensorPrimitives.Subtract(sc, m, sc);
                    TensorPrimitives.Exp(sc, sc);
                    float total = TensorPrimitives.Sum(sc);
                    oi.Clear();
                    for (int j = 0; j < visible; j++) Axpy(sp[j], vh0 + (long)j * v.Cols, op, d);
                    TensorPrimitives.Divide(oi, total, oi);
                    if (lse != null) lse.Row(i)[h] = m + MathF.Log(total);
                }
            }
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Dot(float* a, float* b, int n)
    {
        int i = 0;
        var acc = Vector256<float>.Zero;
        for (; i + 8 <= n; i += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc);
        float r = Vector256.Sum(acc);
        for (; i < n; i++) r += a[i] * b[i];
        return r;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Axpy(float alpha, float* x, float* y, int n)
    {
        int i = 0;
        var a = Vector256.Create(alpha);
        for (; i + 8 <= n; i += 8) Vector256.FusedMultiplyAdd(a, Vector256.Load(x + i), Vector256.Load(y + i)).Store(y + i);
        for (; i < n; i++) y[i] += alpha * x[i];
    }

    public static void Merge(CpuTensor acc, CpuTensor accLse, CpuTensor part, CpuTensor partLse, int heads)
    {
        int d = acc.Cols / heads;
        Parallel.For(0, acc.Rows, i =>
        {
            var a = acc.Row(i); var p = part.Row(i);
            var la = accLse.Row(i); var lp = partLse.Row(i);
            for (int h = 0; h < heads; h++)
            {
                float l1 = la[h], l2 = lp[h];
                if (float.IsNegativeInfinity(l2)) continue;
                var ah = a.Slice(h * d, d);
                if (float.IsNegativeInfinity(l1))
                {
                    p.Slice(h * d, d).CopyTo(ah);
                    la[h] = l2;
                    continue;
                }
                float m = MathF.Max(l1, l2);
                float w1 = MathF.Exp(l1 - m), w2 = MathF.Exp(l2 - m), sum = w1 + w2;
                for (int c = 0; c < d; c++) ah[c] = (w1 * ah[c] + w2 * p[h * d + c]) / sum;
                la[h] = m + MathF.Log(sum);
            }
        });
    }
}
