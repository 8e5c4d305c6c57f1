using Apb.Backends;
using Apb.Checkpoints;

namespace Apb.Strategies.Apb;

/// <summary>
/// Training-free importance per token and KV head, post-RoPE, fp32: the query's pull on the key (Spava) mixed with the
/// key's novelty within its block,
///   s[t, h] = z(K[t, h] . qbar[h]) + <see cref="NoveltyTerm.Weight"/> x z(-K[t, h] . kbar[h]),
/// where qbar[h] is the mean over the query tokens and over KV head h's group of query heads of Q (the mean over query
/// tokens of the per-token dots moves inside the dot, which is linear), kbar[h] the mean of the block's own keys, and z
/// standardizes each head's column over the block (docs/apb-algorithm.md, 2.3b). With a novelty weight of 0
/// (<see cref="ScorerKind.QueryOnly"/>) the score is the query term alone, unstandardized: the scorer before the novelty term.
/// Why the novelty term: a chain of facts (variable tracking: "VAR B = VAR A") shares no tokens with the question past its
/// first link, so the query term alone never ranks the later links high, and a block that does not pass them breaks the
/// chain for every block after it. Those links are what a block holds that its filler does not: keys far from the
/// block's mean key. On the embedded model at 4K over 4 ranks (CPU, seed 0, 12 samples per task, l_p = n/64) the mix
/// kept vt at 96.7 against 71.7 for the query term alone (full: 100), with multi-key (100) and multi-value (89.6) the
/// same for both (bench/results/scorer-cpu-20261203).
/// qbar is also all a rank without the query needs to receive (n_kv x d values per layer).
/// </summary>
/// <param name="noveltyWeight">the novelty term's weight against the query term's (0: the query term alone)</param>
public sealed class QueryAwareScorer(IBackend backend, ModelConfig config, float noveltyWeight = NoveltyTerm.Weight) : IDisposable
{
    Tensor? _scores;
    readonly NoveltyTerm _novelty = new(backend, config);

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
    /// <see cref="IPassingOps.SelectPassing"/> reads, so a device backend never moves them to the host. Four backend ops:
    /// two per-head dots, the block's key mean between them, and their standardized mix (one dot without novelty).
    /// </summary>
    public Tensor ScoreOnDevice(Tensor keys, Tensor queryMean, int rows)
    {
        if (rows <= 0) throw new ArgumentException("query-aware scoring of no rows");
        int kv = config.NumKeyValueHeads;
        if (_scores is null || _scores.Rows != rows)
        {
            _scores?.Dispose();
            _scores = backend.AllocateF32(rows, kv);
        }
        backend.Passing.HeadDot(keys.RowSlice(0, rows), queryMean, kv, _scores);
        if (noveltyWeight != 0) _novelty.MixInto(_scores, keys, noveltyWeight);
        return _scores;
    }

    public void Dispose()
    {
        _scores?.Dispose();
        _scores = null;
        _novelty.Dispose();
    }
}
