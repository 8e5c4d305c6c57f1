namespace Apb.Backends;

/// <summary>
/// APB's own operations (docs/apb-algorithm.md, steps 2.3b and 2.3d): the query-aware score, the max-pooled top-l_p
/// selection per KV head, and the gather of the selected rows. Kept apart from <see cref="IBackend"/>, which holds only
/// what every model needs. <see cref="Cpu.CpuPassingOps"/> is the reference every other implementation is tested against.
/// Selected row indices stay where the backend keeps them (<see cref="PassingRows"/>), so a device backend scores,
/// selects and gathers without a host round trip.
/// </summary>
public interface IPassingOps
{
    /// <summary>
    /// output[0, g x d + c] = mean over the rows t of x and over the heads h of group g (h / (heads / groups) = g) of
    /// x[t, h x d + c]: the query rows averaged per KV head over its group of query heads (qbar). x is [T, heads x d],
    /// output [1, groups x d], fp32 sums.
    /// </summary>
    void GroupMean(Tensor x, int heads, int groups, Tensor output);

    /// <summary>output[t, h] = dot(x[t, head h], vec[0, head h]) for each head: x [T, heads x d], vec [1, heads x d], output [T, heads].</summary>
    void HeadDot(Tensor x, Tensor vec, int heads, Tensor output);

    /// <summary>
    /// output[t, h] = weightA x z(a)[t, h] + weightB x z(b)[t, h], where z standardizes each column (head) over the rows:
    /// z(x)[t, h] = (x[t, h] - mean_t x[:, h]) / std_t x[:, h] (population std; 0 for a constant column). a, b and output
    /// are [rows, heads] fp32; output may be a or b. Two scores of different scales are mixed by their spread, not by
    /// their units. Sums in fp32 or wider, mean first, then the spread around it.
    /// </summary>
    void CombineStandardized(Tensor a, float weightA, Tensor b, float weightB, Tensor output);

    /// <summary>
    /// dst[t, :] = [a[t, :]; b[t, :]; c[t, :]] for t &lt; dst.Rows: the retaining heads' input [q; k; v] in one pass
    /// (three copies were three launches). dst has a.Cols + b.Cols + c.Cols columns; a, b and c at least dst.Rows rows.
    /// </summary>
    void ConcatColumns(Tensor a, Tensor b, Tensor c, Tensor dst);

    /// <summary>
    /// output = silu(h) W^T with W [n, k] narrow (n at most <see cref="NarrowMax"/>): the retaining heads' fc2 on fc1's
    /// output with the SiLU between them fused, in fp32 (a GEMM of n = n_kv columns leaves a GPU idle; this reads h once).
    /// </summary>
    void SiluLinear(Tensor h, IWeight w, Tensor output);

    /// <summary>The most output columns <see cref="SiluLinear"/> takes (n_kv: 8 for Llama-3.x, 4 or 8 for Qwen-2.5).</summary>
    const int NarrowMax = 16;

    /// <summary>Room for [count, heads] row indices on this backend.</summary>
    PassingRows AllocateRows(int count, int heads);

    /// <summary>
    /// Max-pools <paramref name="scores"/> [rows, heads] along the rows (window <see cref="PoolWindow"/>, stride 1, same
    /// length, -inf outside the rows), then writes per head the picked.Count rows with the highest pooled score (ties to
    /// the earlier row): entry i x heads + h is head h's i-th row. In ascending row order, or with
    /// <paramref name="bestFirst"/> by descending pooled score (ties: the earlier row first), so that every prefix of m
    /// rows is the selection of m rows: a passing budget's receivers read prefixes (SequencePlan.PassingBudget).
    /// </summary>
    void SelectPassing(Tensor scores, int heads, PassingRows picked, bool bestFirst = false);

    /// <summary>dst[i, head h] = src[rows[i, h], head h]: rows chosen separately per head into [rows.Count, heads x d].</summary>
    void GatherHeadRows(Tensor src, int heads, PassingRows rows, Tensor dst);

    /// <summary>Reads the indices back (tests, debugging): [Count x Heads] row-major.</summary>
    void Download(PassingRows rows, Span<int> dst);

    /// <summary>Writes indices (row-major [Count x Heads]); each must be a row of the tensor it will gather from.</summary>
    void Upload(ReadOnlySpan<int> src, PassingRows rows);

    /// <summary>The max-pool window of the selection: a token next to an important one is kept with it.</summary>
    const int PoolWindow = 5;
}

/// <summary>[Count, Heads] row indices kept by one backend's <see cref="IPassingOps"/>. Dispose gives them back.</summary>
public abstract class PassingRows(int count, int heads) : IDisposable
{
    public int Count { get; } = count;
    public int Heads { get; } = heads;
    public virtual void Dispose() { }
    public override string ToString() => $"{GetType().Name}[{Count}, {Heads}]";
}
