using System.Numerics.Tensors;

namespace Apb.Backends.Cpu;

/// <summary>
/// Exact attention, the readable reference: for every (query row, head) the scores of all visible keys, softmax with the
/// max subtracted, then the weighted sum of values. fp32 throughout; O(Tq x Tk) memory per thread is one score row.
/// </summary>
static class CpuAttention
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
                for (int j = 0; j < visible; j++)
                    sc[j] = TensorPrimitives.Dot(qi, k.Row(j).Slice(kh * d, d)) * scale;
                float max = TensorPrimitives.Max(sc);
                TensorPrimitives.Subtract(sc, max, sc);
                TensorPrimitives.Exp(sc, sc);
                float sum = TensorPrimitives.Sum(sc);
                oi.Clear();
                for (int j = 0; j < visible; j++)
                    TensorPrimitives.MultiplyAdd(v.Row(j).Slice(kh * d, d), sc[j], oi, oi);
                TensorPrimitives.Divide(oi, sum, oi);
                if (lse != null) lse.Row(i)[h] = max + MathF.Log(sum);
            }
        });
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
