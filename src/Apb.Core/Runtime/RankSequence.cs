using Apb.Attention;
using Apb.Diagnostics;
using Apb.Model;
using Apb.Strategies;

namespace Apb.Runtime;

/// <summary>
/// One request's state on one rank: the KV caches of the tokens this rank holds and the attention that extends them.
/// A sequence that ran full attention (on rank 0 alone) keeps a <see cref="FullAttention"/>; a distributed one keeps
/// its block's caches behind the exact star phase. Dispose gives every byte back to the backend.
/// </summary>
sealed class RankSequence : IDisposable
{
    public int Id { get; }
    public PrefillPlan Plan { get; }
    public Profile? PrefillProfile { get; }

    FullAttention? _full;
    StarPhaseAttention? _phase;
    KvCache[] _caches = [];

    public RankSequence(int id, PrefillPlan plan, Profile? prefillProfile)
    {
        Id = id; Plan = plan; PrefillProfile = prefillProfile;
    }

    /// <summary>The caches of a distributed sequence's block (empty for full attention, which keeps its own).</summary>
    public KvCache[] Caches => _caches;

    /// <summary>Decode steps taken so far (for messages).</summary>
    public int DecodeSteps { get; set; }

    /// <summary>How this sequence's new tokens attend, once prefilled.</summary>
    public IAttention Decoding => (IAttention?)_full ?? _phase ?? throw new InvalidOperationException($"sequence {Id} was not prefilled");

    /// <summary>KV rows this rank holds for layer 0.</summary>
    public int CachedRows => _full?.Length ?? (_caches.Length > 0 ? _caches[0].Length : 0);

    /// <summary>Bytes of KV cache this rank holds for the sequence (every layer, K and V, as allocated).</summary>
    public long KvBytes => (_full?.Caches ?? _caches).Sum(c => c.AllocatedBytes);

    public FullAttention UseFull(FullAttention full) => _full = full;

    public void UseCaches(KvCache[] caches) => _caches = caches;

    public StarPhaseAttention UsePhase(StarPhaseAttention phase) => _phase = phase;

    /// <summary>Call after a step's forward: the star phase's new tokens now have positions (full attention counts its own).</summary>
    public void Advance(int tokens) => _phase?.Advance(tokens);

    public void SetProfile(Profile? p)
    {
        if (_full != null) _full.Profile = p;
        if (_phase != null) _phase.Profile = p;
    }

    public void Dispose()
    {
        _full?.Dispose();
        _phase?.Dispose();
        foreach (var c in _caches) c.Dispose();
        _full = null; _phase = null; _caches = [];
    }
}
