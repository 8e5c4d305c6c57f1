using System.Numerics.Tensors;

namespace Apb.Backends.Cpu;

/// <summary>
/// APB's scoring, selection and gather on the CPU: the reference for every other <see cref="IPassingOps"/>. Sums in
/// double where a mean is taken, selection by a stable sort of the pooled scores.
/// </summary>
public sealed class CpuPassingOps : IPassingOps
{
    static CpuTensor C(Tensor t) => t as CpuTensor ?? throw new ArgumentException($"{t} does not belong to the CPU backend");
    static CpuRows C(PassingRows r) => r as CpuRows ?? throw new ArgumentException($"{r} does not belong to the CPU backend");

    sealed class CpuRows(int count, int heads) : PassingRows(count, heads)
    {
        public readonly int[] Index = new int[checked(count * heads)];
    }

    public void GroupMean(Tensor x, int heads, int groups, Tensor output)
    {
        var xs = C(x); var o = C(output);
        int d = heads > 0 ? xs.Cols / heads : 0;
        if (heads <= 0 || groups <= 0 || heads % groups != 0 || xs.Cols != heads * d || xs.Rows == 0 || o.Rows != 1 || o.Cols != groups * d)
            throw new ArgumentException($"group_mean: x {xs} with {heads} heads in {groups} groups into {o}");
        int g = heads / groups;
        var acc = new double[groups * d];
        for (int t = 0; t < xs.Rows; t++)
            for (int h = 0; h < heads; h++)
            {
                var row = xs.Row(t).Slice(h * d, d);
                int at = h / g * d;
                for (int c = 0; c < d; c++) acc[at + c] += row[c];
            }
        var mean = o.Row(0);
        for (int c = 0; c < acc.Length; c++) mean[c] = (float)(acc[c] / ((double)xs.Rows * g));
    }

    public void HeadDot(Tensor x, Tensor vec, int heads, Tensor output)
    {
        var xs = C(x); var v = C(vec); var o = C(output);
        int d = heads > 0 ? xs.Cols / heads : 0;
        if (heads <= 0 || xs.Cols != heads * d || v.Rows != 1 || v.Cols != xs.Cols || o.Rows != xs.Rows || o.Cols != heads)
            throw new ArgumentException($"head_dot: x {xs}, vec {v}, {heads} heads, out {o}");
        for (int t = 0; t < xs.Rows; t++)
            for (int h = 0; h < heads; h++)
                o.Row(t)[h] = TensorPrimitives.Dot(xs.Row(t).Slice(h * d, d), v.Row(0).Slice(h * d, d));
    }

    public void ConcatColumns(Tensor a, Tensor b, Tensor c, Tensor dst)
    {
        var (x, y, z, o) = (C(a), C(b), C(c), C(dst));
        if (o.Cols != x.Cols + y.Cols + z.Cols || x.Rows < o.Rows || y.Rows < o.Rows || z.Rows < o.Rows)
            throw new ArgumentException($"concat_columns: a {x}, b {y}, c {z} into {o}");
        for (int t = 0; t < o.Rows; t++)
        {
            x.Row(t).CopyTo(o.Row(t));
            y.Row(t).CopyTo(o.Row(t)[x.Cols..]);
            z.Row(t).CopyTo(o.Row(t)[(x.Cols + y.Cols)..]);
        }
    }

    public void SiluLinear(Tensor h, IWeight w, Tensor output)
    {
        var x = C(h); var o = C(output);
        var cw = w as CpuWeight ?? throw new ArgumentException($"weight {w.Name} does not belong to the CPU backend");
        if (cw.Cols != x.Cols || o.Cols != cw.Rows || o.Rows != x.Rows || cw.Rows > IPassingOps.NarrowMax)
            throw new ArgumentException($"silu_linear {cw.Name}: h {x} times W^T [{cw.Cols}, {cw.Rows}] (at most {IPassingOps.NarrowMax} outputs) into {o}");
        var weights = new float[cw.Rows * cw.Cols];
        cw.ReadRows(0, weights);
        var s = new float[x.Cols];
        for (int t = 0; t < x.Rows; t++)
        {
            var row = x.Row(t);
            for (int j = 0; j < s.Length; j++) s[j] = row[j] / (1f + MathF.Exp(-row[j]));
            for (int n = 0; n < cw.Rows; n++) o.Row(t)[n] = TensorPrimitives.Dot<float>(s, weights.AsSpan(n * cw.Cols, cw.Cols));
        }
    }

    public void CombineStandardized(Tensor a, float weightA, Tensor b, float weightB, Tensor output)
    {
        var x = C(a); var y = C(b); var o = C(output);
        if (x.Rows != y.Rows || x.Cols != y.Cols || o.Rows != x.Rows || o.Cols != x.Cols)
            throw new ArgumentException($"combine_standardized: a {x}, b {y} and output {o} must have one shape");
        int rows = x.Rows, heads = x.Cols;
        if (rows == 0) return;
        for (int h = 0; h < heads; h++)
        {
            var (ma, ka) = Standardizer(x, h, weightA);
            var (mb, kb) = Standardizer(y, h, weightB);
            for (int t = 0; t < rows; t++) o.Row(t)[h] = (float)(ka * (x.Row(t)[h] - ma) + kb * (y.Row(t)[h] - mb));
        }
    }

    /// <summary>A column's mean and weight / std (0 for a constant column, whose z is 0): z x weight = factor x (x - mean).</summary>
    static (double Mean, double Factor) Standardizer(CpuTensor x, int col, float weight)
    {
        double sum = 0, dev = 0;
        for (int t = 0; t < x.Rows; t++) sum += x.Row(t)[col];
        double mean = sum / x.Rows;
        for (int t = 0; t < x.Rows; t++) dev += (x.Row(t)[col] - mean) * (x.Row(t)[col] - mean);
        double std = Math.Sqrt(dev / x.Rows);
        return (mean, std > 0 ? weight / std : 0);
    }

    public PassingRows AllocateRows(int count, int heads)
    {
        if (count < 0 || heads <= 0) throw new ArgumentException($"cannot hold [{count}, {heads}] row indices");
        return new CpuRows(count, heads);
    }

    public void SelectPassing(Tensor scores, int heads, PassingRows picked, bool bestFirst = false)
    {
        var s = C(scores); var p = C(picked);
        if (s.Cols != heads || p.Heads != heads || p.Count > s.Rows)
            throw new ArgumentException($"select_passing: {p.Count} of the rows of {s} for {heads} heads");
        Select(s.Span, s.Rows, heads, p.Count, bestFirst).CopyTo(p.Index, 0);
    }

    public void GatherHeadRows(Tensor src, int heads, PassingRows rows, Tensor dst)
    {
        var s = C(src); var d = C(dst); var r = C(rows);
        int hd = heads > 0 ? s.Cols / heads : 0;
        if (heads <= 0 || s.Cols != heads * hd || d.Cols != s.Cols || r.Heads != heads || d.Rows != r.Count)
            throw new ArgumentException($"gather_head_rows: {r} for {heads} heads of {s} into {d}");
        for (int i = 0; i < r.Count; i++)
            for (int h = 0; h < heads; h++)
            {
                int row = r.Index[i * heads + h];
                if ((uint)row >= (uint)s.Rows) throw new ArgumentException($"gather_head_rows: row {row} is outside {s}");
                s.Row(row).Slice(h * hd, hd).CopyTo(d.Row(i).Slice(h * hd, hd));
            }
    }

    public void Download(PassingRows rows, Span<int> dst) => C(rows).Index.CopyTo(dst);

    public void Upload(ReadOnlySpan<int> src, PassingRows rows)
    {
        var r = C(rows);
        if (src.Length != r.Index.Length) throw new ArgumentException($"upload of {src.Length} indices into {r}");
        src.CopyTo(r.Index);
    }

    /// <summary>pooled[t, h] = max of scores[u, h] for |u - t| &lt;= 2 inside [0, rows) (torch's max_pool1d with -inf padding).</summary>
    public static float[] MaxPool(ReadOnlySpan<float> scores, int rows, int heads)
    {
        if (scores.Length != rows * heads) throw new ArgumentException($"{scores.Length} scores for {rows} rows x {heads} heads");
        var pooled = new float[scores.Length];
        int half = IPassingOps.PoolWindow / 2;
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
    /// ascending order, or in that ranking's order with <paramref name="bestFirst"/>. Returns [count, heads] row-major:
    /// entry i x heads + h is head h's i-th row.
    /// </summary>
    public static int[] Select(ReadOnlySpan<float> scores, int rows, int heads, int count, bool bestFirst = false)
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
            if (!bestFirst) Array.Sort(order, 0, count);
            for (int i = 0; i < count; i++) picked[i * heads + h] = order[i];
        }
        return picked;
    }
}
