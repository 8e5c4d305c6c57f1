namespace Apb.Backends.Cpu;

/// <summary>
/// Attention as the textbook writes it, one (query row, head) at a time, with every rule spelled out: the reference
/// the vectorized <see cref="CpuAttention"/> and every GPU kernel are tested against. fp32 tensors in and out; scores,
/// softmax and the weighted sum are computed in double so that the reference's own rounding is far below any
/// tolerance a test sets. Slow on purpose: no blocking, no vectors, no threads.
/// </summary>
public static class ReferenceAttention
{
    /// <summary>
    /// Whether query row i (of tq) may see key j (of tk). Causal masks are aligned bottom-right: the last query row sees
    /// every key, so a query block that continues a cache (tq &lt; tk) sees the whole cache plus its own past, and when
    /// tq &gt; tk the first tq - tk rows see nothing. A sliding window (window &gt; 0, causal) also hides the keys more
    /// than window - 1 places before the row's own: row i sees the window keys ending at i + (tk - tq).
    /// </summary>
    public static bool Visible(int i, int j, int tq, int tk, AttentionMask mask, int window = 0) => mask switch
    {
        AttentionMask.None => true,
        AttentionMask.Causal => j <= i + (tk - tq) && (window == 0 || j > i + (tk - tq) - window),
        _ => throw new ArgumentOutOfRangeException(nameof(mask)),
    };

    /// <summary>
    /// output[i, head h] = sum_j softmax_j(q_i . k_j / sqrt(d)) v_j over the visible keys j, where query head h reads KV
    /// head h / (heads / kvHeads) (grouped-query attention). lse[i, h] = log sum_j exp(q_i . k_j / sqrt(d)). A row that
    /// sees no key gets output 0 and lse -inf.
    /// </summary>
    public static void Run(CpuTensor q, CpuTensor k, CpuTensor v, int heads, int kvHeads, AttentionMask mask,
        CpuTensor output, CpuTensor? lse, int window = 0)
    {
        int tq = q.Rows, tk = k.Rows, d = q.Cols / heads;
        if (heads % kvHeads != 0 || q.Cols != heads * d || k.Cols != kvHeads * d || v.Rows != tk || v.Cols != k.Cols ||
            output.Rows != tq || output.Cols != q.Cols || (lse != null && (lse.Rows != tq || lse.Cols != heads)))
            throw new ArgumentException($"reference attention: q {q}, k {k}, v {v}, {heads}/{kvHeads} heads, out {output}, lse {lse}");
        int group = heads / kvHeads;
        double scale = 1.0 / Math.Sqrt(d);
        var score = new double[tk];
        var acc = new double[d];

        for (int i = 0; i < tq; i++)
            for (int h = 0; h < heads; h++)
            {
                int kh = h / group;
                var qi = q.Row(i).Slice(h * d, d);

                // Scores of the visible keys, and their maximum (subtracted before exp so nothing overflows).
                double max = double.NegativeInfinity;
                for (int j = 0; j < tk; j++)
                {
                    if (!Visible(i, j, tq, tk, mask, window)) { score[j] = double.NegativeInfinity; continue; }
                    var kj = k.Row(j).Slice(kh * d, d);
                    double dot = 0;
                    for (int c = 0; c < d; c++) dot += (double)qi[c] * kj[c];
                    score[j] = dot * scale;
                    max = Math.Max(max, score[j]);
                }

                var oi = output.Row(i).Slice(h * d, d);
                if (double.IsNegativeInfinity(max))
                {
                    oi.Clear();
                    if (lse != null) lse.Row(i)[h] = float.NegativeInfinity;
                    continue;
                }

                // Softmax weights and the weighted sum of the values.
                double sum = 0;
                Array.Clear(acc);
                for (int j = 0; j < tk; j++)
                {
                    if (double.IsNegativeInfinity(score[j])) continue;
                    double w = Math.Exp(score[j] - max);
                    sum += w;
                    var vj = v.Row(j).Slice(kh * d, d);
                    for (int c = 0; c < d; c++) acc[c] += w * vj[c];
                }
                for (int c = 0; c < d; c++) oi[c] = (float)(acc[c] / sum);
                if (lse != null) lse.Row(i)[h] = (float)(max + Math.Log(sum));
            }
    }
}
