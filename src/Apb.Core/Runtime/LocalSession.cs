using Apb.Attention;
using Apb.Backends;
using Apb.Engine;
using Apb.Model;

namespace Apb.Runtime;

/// <summary>
/// A request on one rank with exact attention and a KV cache. Dispose gives the cache back to the backend (a server
/// runs many sessions on one model); with <c>ownsBackend</c> it also disposes the model's backend, and with it the
/// weights: the one-shot paths (a CLI command, one evaluation sample) that load a model for this session alone.
/// </summary>
public sealed class LocalSession : IInferenceSession
{
    readonly LlamaModel _model;
    readonly FullAttention _attention;
    readonly bool _ownsBackend;
    bool _disposed;

    /// <param name="kvDType">how the KV cache stores its rows (--kv-cache-dtype)</param>
    public LocalSession(LlamaModel model, int capacity, bool ownsBackend = false, Backends.KvCacheDType kvDType = Backends.KvCacheDType.Auto)
    {
        _model = model;
        _ownsBackend = ownsBackend;
        _attention = new FullAttention(model.Backend, model.Config, model.Rope, capacity, kvDType);
    }

    public int Length => _attention.Length;

    public float[] Prefill(IReadOnlyList<int> context, IReadOnlyList<int> query)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var ids = context.Concat(query).ToArray();
        return Last(_model.Forward(ids, _attention, LogitsFor.Last)!);
    }

    public float[] Decode(int token)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        // The first step makes the one-token workspace (and frees the prefill's): it runs directly. Later steps only
        // launch and allocate, so a backend with step graphs on may record and replay them.
        if (_steps++ > 0 && _model.Backend is IStepGraphs { StepGraphs: true } graphs)
        {
            int layers = _model.Config.NumHiddenLayers;
            return Last(graphs.Replay(() => _model.Forward([token], _attention, LogitsFor.Last, done => graphs.Boundary(done, layers))!));
        }
        return Last(_model.Forward([token], _attention, LogitsFor.Last)!);
    }

    long _steps;

    /// <summary>Logits for every position of <paramref name="ids"/> [T x vocab], for `apb logits`.</summary>
    public float[] AllLogits(IReadOnlyList<int> ids)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var t = _model.Forward(ids.ToArray(), _attention, LogitsFor.All)!;
        var r = new float[t.Rows * t.Cols];
        _model.Backend.Download(t, r);
        t?.Dispose();
        return r;
    }

    // Logits are a fresh tensor per step; a GPU backend holds device memory for it until it is disposed.
    float[] Last(Backends.Tensor logits)
    {
        var r = new float[logits.Cols];
        _model.Backend.Download(logits, r);
        logits?.Dispose();
        return r;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _attention.Dispose();
        if (_ownsBackend) _model.Backend.Dispose();
    }
}
