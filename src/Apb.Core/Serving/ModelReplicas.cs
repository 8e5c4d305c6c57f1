using System.Collections.Concurrent;
using Apb.Engine;
using Apb.Model;
using Apb.Runtime;

namespace Apb.Serving;

/// <summary>
/// A fixed set of loaded models handed out one per live session and taken back when the session is disposed, so two
/// requests never share a model's scratch buffers. Admission (<see cref="RequestQueue"/>) keeps the number of live
/// sessions at or below the number of replicas; running out means that limit was configured wrong.
/// </summary>
public sealed class ModelReplicas
{
    readonly ConcurrentBag<LlamaModel> _free;
    readonly int _count;

    public ModelReplicas(IEnumerable<LlamaModel> models)
    {
        _free = new ConcurrentBag<LlamaModel>(models);
        _count = _free.Count;
        if (_count == 0) throw new ApbException("a model pool needs at least one replica");
    }

    public IInferenceSession NewSession(PromptTokens prompt, int capacity)
    {
        if (!_free.TryTake(out var model))
            throw new InvalidOperationException(
                $"all {_count} model replicas are in use: the request concurrency must not exceed the number of replicas");
        try { return new Lease(new LocalSession(model, capacity), model, _free); }
        catch { _free.Add(model); throw; }
    }

    sealed class Lease(LocalSession inner, LlamaModel model, ConcurrentBag<LlamaModel> free) : IInferenceSession
    {
        int _disposed;
        public int Length => inner.Length;
        public float[] Prefill(IReadOnlyList<int> context, IReadOnlyList<int> query) => inner.Prefill(context, query);
        public float[] Decode(int token) => inner.Decode(token);

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            inner.Dispose();
            free.Add(model);
        }
    }
}
