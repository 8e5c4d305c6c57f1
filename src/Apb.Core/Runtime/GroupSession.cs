using Apb.Diagnostics;
using Apb.Engine;
using Apb.Strategies;

namespace Apb.Runtime;

/// <summary>
/// One request on a <see cref="RankGroup"/> (on its leader): prefill, decode steps, then Dispose releases the sequence's
/// caches on every rank. The group outlives the session unless the session was made to own it (a one-shot command).
/// A request that failed stays failed: later calls say why.
/// </summary>
public sealed class GroupSession : IInferenceSession
{
    readonly RankGroup _group;
    readonly bool _ownsGroup;
    readonly int? _anchorInsertAt;
    readonly int _decodeBudget;
    int? _sequence;
    string? _failure;
    bool _started, _disposed;

    public GroupSession(RankGroup group, int? anchorInsertAt = null, int decodeBudget = PrefillRequest.DefaultDecodeBudget, bool ownsGroup = false)
    {
        _group = group; _anchorInsertAt = anchorInsertAt; _decodeBudget = decodeBudget; _ownsGroup = ownsGroup;
    }

    public RankGroup Group => _group;
    /// <summary>How the prefill ran (null before it).</summary>
    public PrefillPlan? Prefilled { get; private set; }
    /// <summary>The strategy that ran: the one asked for, or Full below the fallback length.</summary>
    public StrategyKind Strategy => Prefilled?.Strategy ?? _group.Options.Strategy;
    public SequencePlan? Plan => Prefilled?.Plan;
    /// <summary>Ranks the prefill ran on (1 for full attention).</summary>
    public int Ranks => Prefilled?.Ranks ?? _group.WorldSize;
    /// <summary>Why the strategy that ran differs from the one asked for, else null.</summary>
    public string? Note => Prefilled?.Note;
    public string? Settings => Prefilled?.Settings;
    public int Length { get; private set; }
    public int DecodeSteps { get; private set; }
    /// <summary>Per rank (all processes), the prefill's cost; null unless the group records timings.</summary>
    public IReadOnlyList<Profile>? PrefillProfiles { get; private set; }
    /// <summary>
    /// Per rank (all processes), the decode steps' cost so far (the rank's steps: batched steps are shared); null unless
    /// the group records timings. Read from the ranks while the request is alive, and kept when it is disposed.
    /// </summary>
    public IReadOnlyList<Profile>? DecodeProfiles =>
        _decodeProfiles ?? (_group.Options.Timings && _sequence is int s && !_disposed ? _group.Reports(s).Select(r => r.Decode!).ToArray() : null);
    IReadOnlyList<Profile>? _decodeProfiles;

    /// <summary>The prompt's prefill (RankGroup.Prefill: an empty query takes the context's last token).</summary>
    public float[] Prefill(IReadOnlyList<int> context, IReadOnlyList<int> query) => Run(context, query, allLogits: false);

    /// <summary>
    /// Logits for every position of context + query, [(n + q) x vocab] row-major: context rows in position order (anchor
    /// and pad rows dropped), then the query's. For comparing strategies with full attention.
    /// </summary>
    public float[] AllLogits(IReadOnlyList<int> context, IReadOnlyList<int> query) => Run(context, query, allLogits: true);

    float[] Run(IReadOnlyList<int> context, IReadOnlyList<int> query, bool allLogits)
    {
        CheckUsable(prefilled: false);
        _started = true;
        try
        {
            var r = _group.Prefill(new PrefillRequest(context, query, _anchorInsertAt, _decodeBudget, allLogits));
            _sequence = r.Sequence;
            Prefilled = r.Plan;
            PrefillProfiles = _group.Options.Timings ? _group.Reports(r.Sequence).Select(x => x.Prefill!).ToArray() : null;
            Length = context.Count + query.Count;
            return r.Logits;
        }
        catch (ApbException e)
        {
            _failure = e.Message;
            throw;
        }
    }

    public float[] Decode(int token)
    {
        CheckUsable(prefilled: true);
        try
        {
            var logits = _group.Decode([_sequence!.Value], [token])[0];
            Length++;
            DecodeSteps++;
            return logits;
        }
        catch (ApbException e)
        {
            _failure = e.Message;
            _sequence = null; // the group released it
            throw;
        }
    }

    /// <summary>Per local rank, the KV rows held for layer 0 (after prefill: each rank's own real block rows).</summary>
    public int[] CacheLengths() => _sequence is int s ? _group.Describe(s).CachedRows : [];

    /// <summary>The per-rank timing table of the prefill (and of the decode steps, when there were any).</summary>
    public string FormatTimings()
    {
        if (PrefillProfiles is null) return "timings were not recorded (set StrategyOptions.Timings)";
        var text = RankProfileTable.Format($"prefill: {Prefilled}", PrefillProfiles);
        if (DecodeSteps > 0 && DecodeProfiles is { } d) text += Environment.NewLine + RankProfileTable.Format($"decode: {DecodeSteps} step(s)", d);
        return text;
    }

    void CheckUsable(bool prefilled)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_failure != null) throw new InvalidOperationException($"this request failed earlier and cannot continue: {_failure}");
        if (prefilled && _sequence is null) throw new InvalidOperationException("Decode before Prefill");
        if (!prefilled && _started) throw new InvalidOperationException("a session serves one request: Prefill was already called");
    }

    public void Dispose()
    {
        if (_disposed) return;
        try
        {
            if (_sequence is int s)
            {
                if (_group.Options.Timings && _group.Failure is null) _decodeProfiles = DecodeProfiles;
                _group.Release([s]);
            }
        }
        finally
        {
            _disposed = true;
            if (_ownsGroup) _group.Dispose();
        }
    }
}
