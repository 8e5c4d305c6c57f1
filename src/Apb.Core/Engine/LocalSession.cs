using Apb.Distributed;
using Apb.Model;

namespace Apb.Engine;

/// <summary>A request on one rank with exact attention and a KV cache.</summary>
public sealed class LocalSession : IInferenceSession
{
    readonly LlamaModel _model;
    readonly FullAttention _attention;

    public LocalSession(LlamaModel model, int capacity)
    {
        _model = model;
        _attention = new FullAttention(model.Backend, model.Config, model.Rope, capacity);
    }

    public int Length => _attention.Length;

    public float[] Prefill(IReadOnlyList<int> context, IReadOnlyList<int> query)
    {
        var ids = context.Concat(query).ToArray();
        return Last(_model.Forward(ids, _attention, LogitsFor.Last)!);
    }

    public float[] Decode(int token) => Last(_model.Forward([token], _attention, LogitsFor.Last)!);

    /// <summary>Logits for every position of <paramref name="ids"/> [T x vocab], for `apb logits`.</summary>
    public float[] AllLogits(IReadOnlyList<int> ids)
    {
        var t = _model.Forward(ids.ToArray(), _attention, LogitsFor.All)!;
        var r = new float[t.Rows * t.Cols];
        _model.Backend.Download(t, r);
        (t as IDisposable)?.Dispose();
        return r;
    }

    // Logits are a fresh tensor per step; a GPU backend holds device memory for it until it is disposed.
    float[] Last(Backends.Tensor logits)
    {
        var r = new float[logits.Cols];
        _model.Backend.Download(logits, r);
        (logits as IDisposable)?.Dispose();
        return r;
    }

    public void Dispose() { }
}
