using Apb.Checkpoints;
using Apb.Model;

namespace Apb.Backends;

/// <summary>
/// A weight matrix [Rows, Cols] (or vector, Cols = 1) kept by a backend: the CPU reads it from the memory-mapped file,
/// a GPU backend holds its own copy.
/// </summary>
public interface IWeight
{
    string Name { get; }
    int Rows { get; }
    int Cols { get; }
}

/// <summary>Which keys a query row may see. Bottom-right alignment: query row i sees key j when j &lt;= i + (Tk - Tq).</summary>
public enum AttentionMask { None, Causal }

/// <summary>
/// The operations the model and the parallel strategies are written in. Shapes are [tokens, features]; q has
/// heads x headDim columns, k and v kvHeads x headDim. Every op checks its shapes and throws on a mismatch.
/// A backend is not thread-safe: each rank owns its own instance.
/// </summary>
public interface IBackend : IDisposable
{
    string Name { get; }

    Tensor Allocate(int rows, int cols);

    /// <summary>
    /// A tensor that keeps fp32 precision whatever the backend's activation type: log-sum-exp rows, whose rounding to bf16
    /// would put a 1e-2 relative error into every merge weight. Backends that allocate fp32 anyway need not override it.
    /// </summary>
    Tensor AllocateF32(int rows, int cols) => Allocate(rows, cols);
    IWeight Load(WeightView w);

    /// <summary>
    /// A [rows, cols] weight of <see cref="Model.RandomWeights"/>' counter-based values for <paramref name="key"/>
    /// (benchmarks and tests without a checkpoint). The default computes them on the host and loads them; a device
    /// backend should fill them where they live.
    /// </summary>
    IWeight LoadRandom(string name, int rows, int cols, ulong key, float scale, float offset) =>
        Model.RandomWeights.LoadOnHost(this, name, rows, cols, key, scale, offset);

    /// <summary>Copies host floats into rows of a tensor (row-major, src.Length = rows x Cols).</summary>
    void Upload(ReadOnlySpan<float> src, Tensor dst);
    void Download(Tensor src, Span<float> dst);

    /// <summary>dst[dstRow + r, dstCol + c] = src[srcRow + r, srcCol + c] for r &lt; rows, c &lt; cols.</summary>
    void Copy(Tensor src, int srcRow, int srcCol, Tensor dst, int dstRow, int dstCol, int rows, int cols);

    /// <summary>dst[i] = src[rowIndex[i]] for whole rows.</summary>
    void GatherRows(Tensor src, ReadOnlySpan<int> rowIndex, Tensor dst);

    void Embed(ReadOnlySpan<int> ids, IWeight table, Tensor output);
    void RmsNorm(Tensor x, IWeight weight, float eps, Tensor output);
    /// <summary>output = x W^T (+ bias). W is [out_features, in_features] as checkpoints store it.</summary>
    void Linear(Tensor x, IWeight w, IWeight? bias, Tensor output);
    void AddInPlace(Tensor x, Tensor y);

    /// <summary>
    /// The residual add fused with the RMSNorm that follows it: x += y, then output = rms_norm(x) * weight, reading the
    /// sum as it is stored (so the result equals AddInPlace then RmsNorm). One pass over the residual stream instead of
    /// three. output must not alias x or y. The default is the two ops; device backends fuse them in one kernel.
    /// </summary>
    void AddRmsNorm(Tensor x, Tensor y, IWeight weight, float eps, Tensor output)
    {
        AddInPlace(x, y);
        RmsNorm(x, weight, eps, output);
    }
    void SiluMul(Tensor gate, Tensor up, Tensor output);
    void Silu(Tensor x);

    /// <summary>Rotates each head's pairs (i, i + d/2) by position x inv_freq, as HF's rotate_half does.</summary>
    void Rope(Tensor x, int heads, ReadOnlySpan<int> positions, RopeTable table);

    /// <summary>
    /// Softmax(q k^T / sqrt(d)) v per head with GQA (query head h reads KV head h / (heads / kvHeads)).
    /// lse (optional) receives the natural-log sum of exp of the scaled scores, [Tq, heads]; rows that see no key
    /// get output 0 and lse = -inf.
    /// </summary>
    void Attention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, AttentionMask mask, Tensor output, Tensor? lse);

    /// <summary>
    /// Merges a partial attention result into an accumulated one: (acc, accLse) := softmax-weighted combination of
    /// (acc, accLse) and (part, partLse), in fp32 with max subtraction. Rows with lse = -inf contribute nothing.
    /// </summary>
    void MergeAttention(Tensor acc, Tensor accLse, Tensor part, Tensor partLse, int heads);

    /// <summary>
    /// output[0, g x d + c] = mean over the rows t of x and over the heads h of group g (h / (heads / groups) = g) of
    /// x[t, h x d + c]: APB's query-aware qbar, the query rows averaged per KV head over its group of query heads. x is
    /// [T, heads x d], output [1, groups x d]. The default goes through the host (sums in double); a device backend should
    /// override it with a kernel, so that the scorer never waits for the device.
    /// </summary>
    void GroupMean(Tensor x, int heads, int groups, Tensor output)
    {
        int d = heads > 0 ? x.Cols / heads : 0;
        if (heads <= 0 || groups <= 0 || heads % groups != 0 || x.Cols != heads * d || x.Rows == 0 || output.Rows != 1 || output.Cols != groups * d)
            throw new ArgumentException($"group_mean: x {x} with {heads} heads in {groups} groups into {output}");
        int g = heads / groups, t = x.Rows;
        var xs = new float[t * x.Cols];
        Download(x, xs);
        var acc = new double[groups * d];
        for (int i = 0; i < t; i++)
            for (int h = 0; h < heads; h++)
            {
                var row = xs.AsSpan(i * x.Cols + h * d, d);
                int o = h / g * d;
                for (int c = 0; c < d; c++) acc[o + c] += row[c];
            }
        var mean = new float[groups * d];
        for (int c = 0; c < mean.Length; c++) mean[c] = (float)(acc[c] / ((double)t * g));
        Upload(mean, output);
    }

    /// <summary>
    /// output[t, h] = dot(x[t, head h], vec[0, head h]) for each of <paramref name="heads"/> heads: one score per token and
    /// head (APB's query-aware scorer). x is [T, heads x d], vec [1, heads x d], output [T, heads]. The default goes through
    /// the host; a device backend should override it with a kernel.
    /// </summary>
    void HeadDot(Tensor x, Tensor vec, int heads, Tensor output)
    {
        int d = x.Cols / heads;
        if (x.Cols != heads * d || vec.Rows != 1 || vec.Cols != x.Cols || output.Rows != x.Rows || output.Cols != heads)
            throw new ArgumentException($"head_dot: x {x}, vec {vec}, {heads} heads, out {output}");
        var xs = new float[x.Rows * x.Cols]; var vs = new float[vec.Cols]; var o = new float[x.Rows * heads];
        Download(x, xs); Download(vec, vs);
        for (int t = 0; t < x.Rows; t++)
            for (int h = 0; h < heads; h++)
                o[t * heads + h] = System.Numerics.Tensors.TensorPrimitives.Dot(
                    xs.AsSpan(t * x.Cols + h * d, d), vs.AsSpan(h * d, d));
        Upload(o, output);
    }

    /// <summary>
    /// dst[i, head h] = src[rowIndex[i x heads + h], head h]: rows chosen separately per head (APB's passing block keeps
    /// different tokens for each KV head). The default is one Copy per (row, head); a device backend should override it.
    /// </summary>
    void GatherHeadRows(Tensor src, int heads, ReadOnlySpan<int> rowIndex, Tensor dst)
    {
        int d = src.Cols / heads;
        if (src.Cols != heads * d || dst.Cols != src.Cols || rowIndex.Length != dst.Rows * heads)
            throw new ArgumentException($"gather_head_rows: {rowIndex.Length} indices for {heads} heads of {src} into {dst}");
        for (int i = 0; i < dst.Rows; i++)
            for (int h = 0; h < heads; h++)
                Copy(src, rowIndex[i * heads + h], h * d, dst, i, h * d, 1, d);
    }

    /// <summary>
    /// APB's selection (<see cref="global::Apb.Strategies.Apb.PassingSelector.Select"/>): max-pool <paramref name="scores"/>
    /// [rows, heads] along the rows (window 5), then per head the <paramref name="count"/> rows with the highest pooled score
    /// (ties to the earlier row), ascending; entry i x heads + h is head h's i-th row. The default downloads the scores and
    /// selects on the host; a device backend should pool and select with kernels and download only the indices.
    /// </summary>
    int[] SelectPassing(Tensor scores, int heads, int count)
    {
        if (scores.Cols != heads || count < 0 || count > scores.Rows)
            throw new ArgumentException($"select_passing: {count} of the rows of {scores} for {heads} heads");
        var s = new float[scores.Rows * heads];
        Download(scores, s);
        return global::Apb.Strategies.Apb.PassingSelector.Select(s, scores.Rows, heads, count);
    }

    /// <summary>Blocks until queued work is done (a no-op on the CPU).</summary>
    void Synchronize();
}
