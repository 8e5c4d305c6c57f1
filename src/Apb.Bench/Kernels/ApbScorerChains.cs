using Apb.Backends;
using Apb.Backends.Cuda;
using Apb.Checkpoints;
using Apb.Strategies.Apb;

namespace Apb.Bench.Kernels;

/// <summary>
/// APB's two scorers as <see cref="ApbAttention"/> runs them on a rank's block: score, select the top l_p rows per KV
/// head, gather their K and V. The query-aware scorer carries the novelty term; the retaining heads (random fc1
/// [1024, (n_h + 2 n_kv) d] and fc2) are mixed with it at <see cref="NoveltyTerm.WithHeads"/>. Weights and buffers of
/// their own, for the harnesses that time the chains alone (passing, critical-path).
/// </summary>
sealed class ApbScorerChains : IDisposable
{
    readonly CudaBackend _gpu;
    readonly int _kvHeads;
    readonly Tensor _qbar, _sentK, _sentV;
    readonly QueryAwareScorer _queryAware;
    readonly NoveltyTerm _novelty;
    readonly IWeight[] _fc1, _fc2;
    readonly RetainingHeadScorer _retaining;
    readonly PassingRows _picked;

    public ApbScorerChains(CudaBackend gpu, ModelConfig c, int passing)
    {
        _gpu = gpu; _kvHeads = c.NumKeyValueHeads;
        _qbar = gpu.AllocateF32(1, c.KvDim);
        _sentK = gpu.Allocate(passing, c.KvDim, CudaDType.BF16); _sentV = gpu.Allocate(passing, c.KvDim, CudaDType.BF16);
        _queryAware = new QueryAwareScorer(gpu, c);
        _novelty = new NoveltyTerm(gpu, c);
        _fc1 = [gpu.LoadRandom("fc1", 1024, c.QDim + 2 * c.KvDim, 11, 0.02f, 0f)];
        _fc2 = [gpu.LoadRandom("fc2", _kvHeads, 1024, 12, 0.02f, 0f)];
        _retaining = new RetainingHeadScorer(gpu, c, _fc1, _fc2);
        _picked = gpu.Passing.AllocateRows(passing, _kvHeads);
    }

    /// <summary>qbar from <paramref name="queryRows"/>, the block's scores against it with the novelty term, then select and gather.</summary>
    public void QueryAware(Tensor queryRows, Tensor k, Tensor v)
    {
        _queryAware.QueryMean(queryRows, _qbar);
        SelectAndGather(_queryAware.ScoreOnDevice(k, _qbar, k.Rows), k, v);
    }

    /// <summary>The heads on the block's pre-RoPE q/k/v, widened and mixed with the novelty term, then select and gather.</summary>
    public void Retaining(Tensor q, Tensor k, Tensor v)
    {
        var s = _novelty.Widened(_retaining.ScoreOnDevice(0, q, k, v, k.Rows));
        _novelty.MixInto(s, k, NoveltyTerm.WithHeads);
        SelectAndGather(s, k, v);
    }

    void SelectAndGather(Tensor scores, Tensor k, Tensor v)
    {
        var ops = _gpu.Passing;
        ops.SelectPassing(scores, _kvHeads, _picked);
        ops.GatherHeadRows(k, _kvHeads, _picked, _sentK);
        ops.GatherHeadRows(v, _kvHeads, _picked, _sentV);
    }

    public void Dispose()
    {
        _retaining.ReleaseBuffers();
        // The heads' weights (_fc1, _fc2) stay: a backend's weights live as long as the backend (no IWeight is disposable).
        foreach (var t in new IDisposable[] { _qbar, _sentK, _sentV, _queryAware, _novelty, _picked }) t.Dispose();
    }
}
