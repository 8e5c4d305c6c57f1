using Apb.Backends;
using Apb.Checkpoints;

namespace Apb.Strategies.Apb;

/// <summary>
/// Locret's importance score per token and KV head: s = fc2(silu(fc1(concat(q, k, v)))), on pre-RoPE q/k/v, so a token's
/// score does not depend on where it sits. One rank's copy of the weights (a device backend uploads its own).
/// </summary>
public sealed class RetainingHeadScorer
{
    readonly IBackend _b;
    readonly ModelConfig _c;
    readonly Backends.IWeight[] _fc1, _fc2;
    readonly int _hidden;
    Tensor? _x, _h, _s;

    public RetainingHeadScorer(IBackend backend, ModelConfig config, RetainingHeads heads)
    {
        if (heads.Layers != config.NumHiddenLayers)
            throw new ApbException($"{heads.Path}: retaining heads for {heads.Layers} layers, the model has {config.NumHiddenLayers}");
        _b = backend; _c = config; _hidden = heads.HiddenSize;
        _fc1 = Enumerable.Range(0, heads.Layers).Select(i => backend.Load(heads.Fc1(i))).ToArray();
        _fc2 = Enumerable.Range(0, heads.Layers).Select(i => backend.Load(heads.Fc2(i))).ToArray();
    }

    /// <summary>
    /// Weights already on the backend, fc1 [hidden, (n_h + 2 n_kv) d] and fc2 [n_kv, hidden] per layer (benches time the
    /// scorer with random ones: `apb bench kernel passing`).
    /// </summary>
    public RetainingHeadScorer(IBackend backend, ModelConfig config, Backends.IWeight[] fc1, Backends.IWeight[] fc2)
    {
        if (fc1.Length == 0 || fc1.Length != fc2.Length)
            throw new ArgumentException($"retaining heads: {fc1.Length} fc1 and {fc2.Length} fc2 weights");
        _b = backend; _c = config; _hidden = fc1[0].Rows;
        _fc1 = fc1; _fc2 = fc2;
    }

    /// <summary>Scores of the first <paramref name="rows"/> rows, [rows, n_kv] row-major on the host.</summary>
    public float[] Score(int layer, Tensor q, Tensor k, Tensor v, int rows)
    {
        var result = new float[rows * _c.NumKeyValueHeads];
        if (rows == 0) return result;
        _b.Download(ScoreOnDevice(layer, q, k, v, rows), result);
        return result;
    }

    /// <summary>The same scores left on the backend, [rows, n_kv] (a buffer reused by the next call).</summary>
    public Tensor ScoreOnDevice(int layer, Tensor q, Tensor k, Tensor v, int rows)
    {
        if (rows <= 0) throw new ArgumentException("retaining-head scoring of no rows");
        int qd = _c.QDim, kvd = _c.KvDim;
        if (_x is null || _x.Rows != rows)
        {
            ReleaseBuffers();
            _x = _b.Allocate(rows, qd + 2 * kvd);
            _h = _b.Allocate(rows, _hidden);
            _s = _b.Allocate(rows, _c.NumKeyValueHeads);
        }
        // Three launches on a GPU: [q; k; v] in one pass, fc1 (a GEMM), and fc2 with the SiLU fused (n_kv outputs).
        _b.Passing.ConcatColumns(q, k, v, _x);
        _b.Linear(_x, _fc1[layer], null, _h!);
        if (_c.NumKeyValueHeads <= IPassingOps.NarrowMax) _b.Passing.SiluLinear(_h!, _fc2[layer], _s!);
        else
        {
            _b.Silu(_h!);
            _b.Linear(_h!, _fc2[layer], null, _s!);
        }
        return _s!;
    }

    /// <summary>
    /// Gives back the scratch sized for the last request's block (the weights stay): a resident scorer otherwise keeps
    /// a block's worth of [rows, (n_h + 2 n_kv) d] activations between requests.
    /// </summary>
    public void ReleaseBuffers()
    {
        foreach (var t in new[] { _x, _h, _s }) t?.Dispose();
        _x = _h = _s = null;
    }
}
