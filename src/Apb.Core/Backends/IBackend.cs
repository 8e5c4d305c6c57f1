using Apb.Checkpoints;

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

/// <summary>
/// A backend's memory: bytes its tensors and weights hold now, the most they held since <see cref="IBackend.ResetPeakMemory"/>,
/// what the device has in all, and what more it could still hold (the device's free memory plus what its own pool keeps
/// idle). All 0 where the backend does not track memory: the CPU backend's arrays belong to the GC.
/// </summary>
public readonly record struct MemoryStats(long InUseBytes, long PeakBytes, long DeviceBytes, long AvailableBytes)
{
    public bool Tracked => DeviceBytes > 0;
}

/// <summary>
/// Copies between host and device memory since a backend was made: bytes and copies each way. A round trip through the
/// host stalls the device's queue (a download waits for the work before it), so APB's machinery must make none inside
/// the layers. All 0 on the CPU backend, whose tensors are host memory.
/// </summary>
public readonly record struct HostTransfers(long ToDeviceBytes, long ToDeviceCopies, long ToHostBytes, long ToHostCopies)
{
    public long Bytes => ToDeviceBytes + ToHostBytes;
    public long Copies => ToDeviceCopies + ToHostCopies;

    public static HostTransfers operator -(HostTransfers a, HostTransfers b) =>
        new(a.ToDeviceBytes - b.ToDeviceBytes, a.ToDeviceCopies - b.ToDeviceCopies, a.ToHostBytes - b.ToHostBytes, a.ToHostCopies - b.ToHostCopies);
    public static HostTransfers operator +(HostTransfers a, HostTransfers b) =>
        new(a.ToDeviceBytes + b.ToDeviceBytes, a.ToDeviceCopies + b.ToDeviceCopies, a.ToHostBytes + b.ToHostBytes, a.ToHostCopies + b.ToHostCopies);
}

/// <summary>A weight, its optional bias, and the tensor its product with an input goes to (<see cref="IBackend.Linears"/>).</summary>
public readonly record struct LinearOutput(IWeight Weight, IWeight? Bias, Tensor Output);

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
    /// QK8 (--prefill-attention fp8): attention calls that <see cref="Qk8.Applies"/> to compute S = Q K^T from q and k
    /// rounded to e4m3 as <see cref="Qk8"/> says, P V as before. Off by default. A backend that cannot (a GPU without the
    /// Hopper kernel) refuses true with an ApbException that says why.
    /// </summary>
    bool AttentionQkFp8 { get; set; }

    /// <summary>
    /// A tensor that keeps fp32 precision whatever the backend's activation type: log-sum-exp rows, whose rounding to bf16
    /// would put a 1e-2 relative error into every merge weight. Backends that allocate fp32 anyway need not override it.
    /// </summary>
    Tensor AllocateF32(int rows, int cols) => Allocate(rows, cols);
    IWeight Load(WeightView w);

    /// <summary>
    /// A [rows, cols] weight of <see cref="RandomValues"/>' counter-based values for <paramref name="key"/>
    /// (benchmarks and tests without a checkpoint). The default computes them on the host and loads them; a device
    /// backend should fill them where they live.
    /// </summary>
    IWeight LoadRandom(string name, int rows, int cols, ulong key, float scale, float offset) =>
        RandomValues.LoadOnHost(this, name, rows, cols, key, scale, offset);

    /// <summary>Copies host floats into rows of a tensor (row-major, src.Length = rows x Cols).</summary>
    void Upload(ReadOnlySpan<float> src, Tensor dst);
    void Download(Tensor src, Span<float> dst);

    /// <summary>dst[dstRow + r, dstCol + c] = src[srcRow + r, srcCol + c] for r &lt; rows, c &lt; cols.</summary>
    void Copy(Tensor src, int srcRow, int srcCol, Tensor dst, int dstRow, int dstCol, int rows, int cols);

    /// <summary>
    /// Row i of <paramref name="src"/> into <paramref name="destinations"/>[i], a one-row tensor of the same width (the
    /// next free row of a sequence's KV cache): a batched decode step appends every sequence's new K, then V, in one
    /// call each. A device backend does it in one launch; the default copies row by row.
    /// </summary>
    void ScatterRows(Tensor src, IReadOnlyList<Tensor> destinations)
    {
        if (destinations.Count != src.Rows) throw new ArgumentException($"scatter of {src.Rows} rows into {destinations.Count} destinations");
        for (int i = 0; i < destinations.Count; i++) Copy(src, i, 0, destinations[i], 0, 0, 1, src.Cols);
    }

    /// <summary>
    /// result[r] = the column of row r's largest value, the lowest such column on ties; NaN never wins (a row of NaN
    /// gives 0): greedy decoding without bringing a vocabulary-wide row to the host. The default downloads the rows.
    /// </summary>
    void ArgMaxRows(Tensor x, Span<int> result)
    {
        if (result.Length != x.Rows) throw new ArgumentException($"argmax of {x.Rows} rows into {result.Length} results");
        var all = new float[(long)x.Rows * x.Cols];
        Download(x, all);
        for (int r = 0; r < x.Rows; r++) result[r] = Engine.Sampler.ArgMax(all.AsSpan(r * x.Cols, x.Cols));
    }

    void Embed(ReadOnlySpan<int> ids, IWeight table, Tensor output);
    /// <summary>output = x * rsqrt(mean(x^2) + eps) * weight, row by row; output may be x (in place).</summary>
    void RmsNorm(Tensor x, IWeight weight, float eps, Tensor output);
    /// <summary>output = x W^T (+ bias). W is [out_features, in_features] as checkpoints store it.</summary>
    void Linear(Tensor x, IWeight w, IWeight? bias, Tensor output);
    void AddInPlace(Tensor x, Tensor y);

    /// <summary>
    /// Several products of the same input, output_i = x W_i^T (+ bias_i): a layer's q, k and v. The default is one
    /// <see cref="Linear"/> each; a device backend may read x once for all of them in one launch (a decode step, where
    /// the launches cost as much as the reads).
    /// </summary>
    void Linears(Tensor x, ReadOnlySpan<LinearOutput> outputs)
    {
        foreach (var o in outputs) Linear(x, o.Weight, o.Bias, o.Output);
    }

    /// <summary>
    /// The gated MLP's first half: output = silu(g) * u with g = x Wg^T (+ bg) and u = x Wu^T (+ bu), g and u each
    /// rounded to the activation type first, as <see cref="Linear"/> stores them. <paramref name="upScratch"/> holds u
    /// where the backend needs it in memory (the default: Linear, Linear, SiluMul); a device backend may fuse the three
    /// for a few rows and leave it untouched. output may be neither x nor upScratch.
    /// </summary>
    void GatedLinear(Tensor x, IWeight gate, IWeight? gateBias, IWeight up, IWeight? upBias, Tensor upScratch, Tensor output) =>
        GatedLinearUnfused(this, x, gate, gateBias, up, upBias, upScratch, output);

    /// <summary><see cref="GatedLinear"/> as its three ops, for a backend that fuses it only for some shapes.</summary>
    static void GatedLinearUnfused(IBackend b, Tensor x, IWeight gate, IWeight? gateBias, IWeight up, IWeight? upBias, Tensor upScratch, Tensor output)
    {
        b.Linear(x, gate, gateBias, output);
        b.Linear(x, up, upBias, upScratch);
        b.SiluMul(output, upScratch, output);
    }

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
    /// A step's rotation and KV append: q and k rotated in place (<see cref="Rope"/>), then the rotated k copied into
    /// <paramref name="kDst"/> and v into <paramref name="vDst"/> (tensors of k's shape: the cache rows the step's tokens
    /// take). The default is the four ops; a device backend does them in one launch.
    /// </summary>
    void RopeAppend(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, ReadOnlySpan<int> positions, RopeTable table, Tensor kDst, Tensor vDst)
    {
        Rope(q, heads, positions, table);
        Rope(k, kvHeads, positions, table);
        Copy(k, 0, 0, kDst, 0, 0, k.Rows, k.Cols);
        Copy(v, 0, 0, vDst, 0, 0, v.Rows, v.Cols);
    }

    // ------------------------------------------------------------------------------------------- KV cache storage
    // A KvCache of KvCacheDType.Auto holds plain tensors; one of another dtype holds rows in the backend's own form of
    // it and goes through these five. The defaults take Auto only and refuse the rest with an error that names them.

    /// <summary>Room for <paramref name="rows"/> cache rows of <paramref name="cols"/> values in <paramref name="dtype"/>.</summary>
    Tensor AllocateKv(int rows, int cols, KvCacheDType dtype) =>
        dtype == KvCacheDType.Auto ? Allocate(rows, cols) : throw KvUnsupported(dtype);

    /// <summary>Bytes <paramref name="rows"/> cache rows of <paramref name="cols"/> values take in <paramref name="dtype"/>.</summary>
    long KvBytes(long rows, int cols, KvCacheDType dtype) =>
        dtype == KvCacheDType.Auto ? rows * cols * ActivationBytes : throw KvUnsupported(dtype);

    /// <summary><see cref="RopeAppend"/> into cache rows of <paramref name="dtype"/> (kDst, vDst from <see cref="AllocateKv"/>).</summary>
    void RopeAppendKv(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, ReadOnlySpan<int> positions, RopeTable table, Tensor kDst, Tensor vDst,
                      KvCacheDType dtype)
    {
        if (dtype != KvCacheDType.Auto) throw KvUnsupported(dtype);
        RopeAppend(q, k, v, heads, kvHeads, positions, table, kDst, vDst);
    }

    /// <summary>Rows [srcRow, srcRow + rows) of plain <paramref name="src"/> into cache rows of <paramref name="dtype"/> from <paramref name="dstRow"/> on.</summary>
    void AppendKv(Tensor src, int srcRow, Tensor dst, int dstRow, int rows, KvCacheDType dtype)
    {
        if (dtype != KvCacheDType.Auto) throw KvUnsupported(dtype);
        Copy(src, srcRow, 0, dst, dstRow, 0, rows, src.Cols);
    }

    /// <summary>
    /// Cache rows of <paramref name="dtype"/> as a plain tensor of their values, for the attention ops. A backend that
    /// has to convert them writes into its own scratch, one for keys and one for values (<paramref name="values"/>):
    /// the result is valid until the next read of the same kind.
    /// </summary>
    Tensor ReadKv(Tensor rows, int cols, KvCacheDType dtype, bool values) =>
        dtype == KvCacheDType.Auto ? rows : throw KvUnsupported(dtype);

    /// <summary>
    /// <see cref="Attention"/> straight from cache rows of <paramref name="dtype"/> where the backend has a kernel for
    /// it (a device's fp8 decode); false, with nothing done, where the caller should read the rows (<see cref="ReadKv"/>)
    /// and call <see cref="Attention"/>.
    /// </summary>
    bool TryAttentionKv(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, AttentionMask mask, Tensor output, Tensor? lse, KvCacheDType dtype) => false;

    /// <summary>
    /// <see cref="ScatterRows"/> into cache rows of <paramref name="dtype"/>: row i of plain <paramref name="src"/> into
    /// the one-row <paramref name="destinations"/>[i] (a sequence's next cache row), a batched decode step's append.
    /// </summary>
    void ScatterRowsKv(Tensor src, IReadOnlyList<Tensor> destinations, KvCacheDType dtype)
    {
        if (dtype == KvCacheDType.Auto) { ScatterRows(src, destinations); return; }
        if (destinations.Count != src.Rows) throw new ArgumentException($"scatter of {src.Rows} rows into {destinations.Count} destinations");
        for (int i = 0; i < destinations.Count; i++) AppendKv(src, i, destinations[i], 0, 1, dtype);
    }

    /// <summary>
    /// <see cref="DecodeAttention"/> against cache rows of <paramref name="dtype"/> (keys[i], values[i]: sequence i's
    /// stored rows). The default takes the sequences one by one (<see cref="TryAttentionKv"/>, else their values).
    /// </summary>
    void DecodeAttentionKv(Tensor q, IReadOnlyList<Tensor> keys, IReadOnlyList<Tensor> values, int heads, int kvHeads, Tensor output,
                           KvCacheDType dtype)
    {
        if (dtype == KvCacheDType.Auto) { DecodeAttention(q, keys, values, heads, kvHeads, output); return; }
        if (keys.Count != q.Rows || values.Count != q.Rows || output.Rows != q.Rows || heads <= 0)
            throw new ArgumentException($"decode attention: {q.Rows} rows, {keys.Count} key and {values.Count} value tensors, output {output}");
        DecodeKvOneByOne(this, q, keys, values, heads, kvHeads, output, dtype);
    }

    /// <summary>
    /// <see cref="DecodeAttentionKv"/> one sequence at a time: <see cref="TryAttentionKv"/>, else <see cref="Attention"/>
    /// to the rows' values. The default, and a device's way for calls its batch kernel does not take.
    /// </summary>
    static void DecodeKvOneByOne(IBackend b, Tensor q, IReadOnlyList<Tensor> keys, IReadOnlyList<Tensor> values, int heads, int kvHeads,
                                 Tensor output, KvCacheDType dtype)
    {
        int cols = q.Cols / heads * kvHeads;
        for (int i = 0; i < q.Rows; i++)
        {
            Tensor row = q.RowSlice(i, 1), o = output.RowSlice(i, 1);
            if (!b.TryAttentionKv(row, keys[i], values[i], heads, kvHeads, AttentionMask.None, o, null, dtype))
                b.Attention(row, b.ReadKv(keys[i], cols, dtype, values: false), b.ReadKv(values[i], cols, dtype, values: true), heads, kvHeads,
                            AttentionMask.None, o, null);
        }
    }

    static ApbException KvUnsupported(KvCacheDType dtype) =>
        new($"this backend has no {dtype.Name()} KV cache: use --kv-cache-dtype auto");

    /// <summary>
    /// Softmax(q k^T / sqrt(d)) v per head with GQA (query head h reads KV head h / (heads / kvHeads)).
    /// lse (optional) receives the natural-log sum of exp of the scaled scores, [Tq, heads]; rows that see no key
    /// get output 0 and lse = -inf. <paramref name="window"/> &gt; 0 (causal only) is a sliding window: query row i sees
    /// only the <paramref name="window"/> keys ending at its own, i + shift - window &lt; j &lt;= i + shift with
    /// shift = Tk - Tq (Mistral's mask).
    /// </summary>
    void Attention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, AttentionMask mask, Tensor output, Tensor? lse, int window = 0);

    /// <summary>
    /// A decode step of several sequences at once: row i of q (one new token of sequence i, whose key and value are
    /// already the last rows of keys[i] and values[i]) attends to every row of keys[i]/values[i], with GQA as in
    /// <see cref="Attention"/>. The default is one <see cref="Attention"/> per row; a device backend does the batch in
    /// one launch, which fills the device where one row of one sequence cannot.
    /// </summary>
    void DecodeAttention(Tensor q, IReadOnlyList<Tensor> keys, IReadOnlyList<Tensor> values, int heads, int kvHeads, Tensor output)
    {
        if (keys.Count != q.Rows || values.Count != q.Rows || output.Rows != q.Rows)
            throw new ArgumentException($"decode attention: {q.Rows} rows, {keys.Count} key and {values.Count} value tensors, output {output}");
        for (int i = 0; i < q.Rows; i++)
            Attention(q.RowSlice(i, 1), keys[i], values[i], heads, kvHeads, AttentionMask.None, output.RowSlice(i, 1), null);
    }

    /// <summary>
    /// Merges a partial attention result into an accumulated one: (acc, accLse) := softmax-weighted combination of
    /// (acc, accLse) and (part, partLse), in fp32 with max subtraction. Rows with lse = -inf contribute nothing.
    /// </summary>
    void MergeAttention(Tensor acc, Tensor accLse, Tensor part, Tensor partLse, int heads);

    /// <summary>APB's scoring, selection and gather (<see cref="IPassingOps"/>), on this backend.</summary>
    IPassingOps Passing { get; }

    /// <summary>
    /// The exact combination of <paramref name="count"/> partial attention results of the same T rows (one per rank, in rank
    /// order), stacked part-major in parts [count x T, heads x d] with their log-sum-exps lses [count x T, heads]:
    /// m = max_r lse_r, w_r = exp(lse_r - m), output = sum_r w_r part_r / sum_r w_r, in fp32 and rounded once. Rows that every
    /// part left empty (lse = -inf) get 0. The order of the sum is fixed, so equal inputs give equal bits on every rank.
    /// </summary>
    void MergeAttentionParts(Tensor parts, Tensor lses, int count, int heads, Tensor output);

    /// <summary>Bytes per element of an activation or KV-cache tensor (<see cref="Allocate"/>): 4 for fp32, 2 for bf16.</summary>
    int ActivationBytes { get; }

    /// <summary>What this backend's memory holds now (see <see cref="MemoryStats"/>).</summary>
    MemoryStats Memory { get; }

    /// <summary>Host&lt;-&gt;device copies so far (<see cref="HostTransfers"/>): none where host memory is the device's.</summary>
    HostTransfers Transfers => default;

    /// <summary>Starts a new peak: <see cref="MemoryStats.PeakBytes"/> becomes what is in use now.</summary>
    void ResetPeakMemory();

    /// <summary>Blocks until queued work is done (a no-op on the CPU).</summary>
    void Synchronize();
}
