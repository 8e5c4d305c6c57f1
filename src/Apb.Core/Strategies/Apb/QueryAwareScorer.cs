using Apb.Backends;
using Apb.Checkpoints;

namespace Apb.Strategies.Apb;

/// <summary>
/// Training-free importance (Spava): s[t, h] = mean over query tokens of dot(K[t, h], mean over h's GQA group of Q[h]),
/// post-RoPE, fp32, unscaled. The dot product is linear, so the mean over query tokens moves inside it: one vector per KV
/// head, qbar[h] = mean over (query tokens x group heads) of Q, and s[t, h] = dot(K[t, h], qbar[h]). That vector is also
/// all a rank without the query needs to receive (n_kv x d values per layer).
/// </summary>
public sealed class QueryAwareScorer(IBackend backend, ModelConfig config) : IDisposable
{
    Tensor? _scores;

    /// <summary>
    /// qbar into <paramref name="result"/> [1, kv_dim], from the query's rows of Q [T_query, q_dim] (post-RoPE): one backend
    /// op (<see cref="IPassingOps.GroupMean"/>), a kernel on the GPU, so nothing waits for the device here.
    /// </summary>
    public void QueryMean(Tensor queryRows, Tensor result)
    {
        if (queryRows.Rows == 0) throw new ArgumentException("query-aware scoring needs at least one query row");
        backend.Passing.GroupMean(queryRows, config.NumAttentionHeads, config.NumKeyValueHeads, result);
    }

    /// <summary>Scores of the first <paramref name="rows"/> rows of K (post-RoPE), [rows, n_kv] row-major on the host.</summary>
    public float[] Score(Tensor keys, Tensor queryMean, int rows)
    {
        var result = new float[rows * config.NumKeyValueHeads];
        if (rows == 0) return result;
        backend.Download(ScoreOnDevice(keys, queryMean, rows), result);
        return result;
    }

    /// <summary>
    /// The same scores left on the backend, [rows, n_kv] fp32 (a buffer reused by the next call): what
    /// <see cref="IPassingOps.SelectPassing"/> reads, so a device backend never moves them to the host.
    /// </summary>
    public Tensor ScoreOnDevice(Tensor keys, Tensor queryMean, int rows)
    {
        if (rows <= 0) throw new ArgumentException("query-aware scoring of no rows");
        if (_scores is null || _scores.Rows != rows)
        {
            _scores?.Dispose();
            _scores = backend.AllocateF32(rows, config.NumKeyValueHeads);
        }
        backend.Passing.HeadDot(keys.RowSlice(0, rows), queryMean, config.NumKeyValueHeads, _scores);
        return _scores;
    }

    public void Dispose()
    {
        _scores?.Dispose();
        _scores = null;
    }
}
