namespace Apb.Strategies.Apb;

/// <summary>
/// APB's choice of the tokens a rank passes on: smooth the scores with a max-pool along the sequence (window 5, stride 1,
/// same length, so a token next to an important one is kept with it), then keep the top l_p tokens per KV head.
/// Only the block's real rows are scored, so anchor and pad rows can never be chosen, and pooling stops at the block's
/// edges rather than borrowing the anchor's scores.
/// </summary>
public static class PassingSelector
{
    public const int PoolWindow = 5;

    /// <summary>pooled[t, h] = max of scores[t', h] for |t' - t| &lt;= 2 inside [0, rows) (torch's max_pool1d with -inf padding).</summary>
    public static float[] MaxPool(ReadOnlySpan<float> scores, int rows, int heads)
    {
        if (scores.Length != rows * heads) throw new ArgumentException($"{scores.Length} scores for {rows} rows x {heads} heads");
        var pooled = new float[scores.Length];
        int half = PoolWindow / 2;
        for (int t = 0; t < rows; t++)
            for (int h = 0; h < heads; h++)
            {
                float m = float.NegativeInfinity;
                for (int u = Math.Max(0, t - half); u <= Math.Min(rows - 1, t + half); u++) m = MathF.Max(m, scores[u * heads + h]);
                pooled[t * heads + h] = m;
            }
        return pooled;
    }

    /// <summary>
    /// For each head the <paramref name="count"/> rows with the highest pooled score (ties go to the earlier row), in
    /// ascending order. Returns [count, heads] row-major: entry i x heads + h is head h's i-th row.
    /// </summary>
    public static int[] Select(ReadOnlySpan<float> scores, int rows, int heads, int count)
    {
        if (count > rows) throw new ArgumentException($"cannot select {count} of {rows} rows");
        var pooled = MaxPool(scores, rows, heads);
        var picked = new int[count * heads];
        var order = new int[rows];
        for (int h = 0; h < heads; h++)
        {
            for (int t = 0; t < rows; t++) order[t] = t;
            int head = h;
            Array.Sort(order, (a, b) =>
            {
                int c = pooled[b * heads + head].CompareTo(pooled[a * heads + head]);
                return c != 0 ? c : a.CompareTo(b);
            });
            Array.Sort(order, 0, count);
            for (int i = 0; i < count; i++) picked[i * heads + h] = order[i];
        }
        return picked;
    }

    /// <summary>The first <paramref name="count"/> rows for every head: what is passed when nothing needs dropping.</summary>
    public static int[] All(int count, int heads)
    {
        var picked = new int[count * heads];
        for (int i = 0; i < count; i++)
            for (int h = 0; h < heads; h++) picked[i * heads + h] = i;
        return picked;
    }
}
