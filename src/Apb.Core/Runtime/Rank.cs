using Apb.Attention;
using Apb.Backends;
using Apb.Checkpoints;
using Apb.Comms;
using Apb.Diagnostics;
using Apb.Model;
using Apb.Strategies;
using Apb.Strategies.Apb;

namespace Apb.Runtime;

/// <summary>
/// One rank of a <see cref="RankGroup"/>, resident for the group's life: its backend, the model on it (weights loaded
/// once), its end of the communicator, APB's retaining heads when the group scores with them, and the state of every
/// sequence it holds. It runs the group's commands (<see cref="GroupCommand"/>) on its own thread; every rank of the
/// group runs the same command, and rank 0 reports the logits (every rank computes the same ones).
/// </summary>
public sealed class Rank : IDisposable
{
    readonly ModelConfig _config;
    readonly StrategyOptions _options;
    readonly Dictionary<int, RankSequence> _sequences = new();
    readonly bool _ownsBackend;
    Profile? _decodeProfile;

    public int Index { get; }
    public IBackend Backend { get; }
    public LlamaModel Model { get; }
    public ICommunicator Comm { get; }
    internal RetainingHeadScorer? Retaining { get; }

    /// <summary>What the rank is doing, for the error that names a failed rank (read from another thread).</summary>
    public volatile string Doing = "idle";

    /// <summary>Per decode step: where this rank's time went (only with <see cref="StrategyOptions.Timings"/>).</summary>
    public Profile? DecodeProfile => _decodeProfile;

    internal Rank(int index, IBackend backend, bool ownsBackend, LlamaModel model, ICommunicator comm, ModelConfig config,
        StrategyOptions options, RetainingHeads? heads)
    {
        Index = index; Backend = backend; _ownsBackend = ownsBackend; Model = model; Comm = comm; _config = config; _options = options;
        if (heads != null) Retaining = new RetainingHeadScorer(backend, config, heads);
        if (options.Timings) _decodeProfile = new Profile(backend);
    }

    internal int SequenceCount => _sequences.Count;
    internal bool Holds(int sequence) => _sequences.ContainsKey(sequence);
    internal RankSequence Sequence(int id) =>
        _sequences.TryGetValue(id, out var s) ? s : throw new InvalidOperationException($"rank {Index} holds no sequence {id}");

    /// <summary>Runs one command; returns the logits on rank 0 (null elsewhere and for commands without logits).</summary>
    internal float[]? Execute(GroupCommand command, Func<bool> cancelled)
    {
        switch (command)
        {
            case GroupCommand.Prefill p: return Prefill(p, cancelled);
            case GroupCommand.Decode d: return Decode(d);
            case GroupCommand.Extend e: return Extend(e);
            case GroupCommand.Release r: Release(r.Sequences); return null;
            case GroupCommand.Report r: return Report(r.Sequence);
            case GroupCommand.Memory m: return GatherMemory(m.ResetPeak);
            case GroupCommand.Shutdown: return null;
            default: throw new ArgumentException($"rank {Index}: unknown command {command.GetType().Name}");
        }
    }

    // ------------------------------------------------------------------------------------------------ prefill

    float[]? Prefill(GroupCommand.Prefill c, Func<bool> cancelled)
    {
        if (_sequences.ContainsKey(c.Sequence)) throw new InvalidOperationException($"rank {Index} already holds sequence {c.Sequence}");
        var profile = c.Timings ? new Profile(Backend) : null;
        var seq = new RankSequence(c.Sequence, c.Plan, profile);
        _sequences[c.Sequence] = seq;
        SetProfile(profile, null);
        try
        {
            var logits = c.Plan.Distributed ? DistributedPrefill(seq, c, cancelled) : FullPrefill(seq, c, cancelled);
            Doing = "idle";
            return Index == 0 ? logits : null;
        }
        catch
        {
            // Doing still says where it failed: the group's error names it.
            Release([c.Sequence]);
            throw;
        }
        finally
        {
            SetProfile(null, null);
        }
    }

    float[] FullPrefill(RankSequence seq, GroupCommand.Prefill c, Func<bool> cancelled)
    {
        string stage = $"{Name(c.Plan.Strategy)} prefill";
        Doing = stage;
        int total = c.Context.Length + c.Query.Length;
        var full = seq.UseFull(new FullAttention(Backend, _config, Model.Rope, total + c.DecodeBudget, _options.KvCache) { Profile = seq.PrefillProfile });
        var gate = new LayerGate(full, this, stage, c.Cancellable ? new LocalCancel(cancelled) : null);
        return Download(Model.Forward([.. c.Context, .. c.Query], gate, c.AllLogits ? LogitsFor.All : LogitsFor.Last)!);
    }

    float[]? DistributedPrefill(RankSequence seq, GroupCommand.Prefill c, Func<bool> cancelled)
    {
        var plan = c.Plan.Plan!;
        string stage = $"{Name(c.Plan.Strategy)} prefill";
        Doing = stage;
        ICancelCheck? cancel = c.Cancellable ? new AgreedCancel(this, cancelled) : null;
        float[]? contextLogits = null;
        using (var strategy = StrategyFactory.Create(c.Plan.Strategy, Backend, _config, Model.Rope, plan, Comm, c.Plan.NoveltyTermWeight,
            // Only APB scores keys: a group built for Star or an exact strategy loads no heads, whatever the scorer says.
            c.Plan.Strategy.IsApb() && c.Plan.Scorer.UsesHeads() ? Retaining ?? throw new InvalidOperationException($"rank {Index} has no retaining heads") : null,
            _options.Overlap, _options.KvCache, c.Plan.PassingFromLayer))
        {
            seq.UseCaches(strategy.Caches);
            strategy.Profile = seq.PrefillProfile;
            // The last rank appends the query and every decoded token: room for them before the block is cached.
            strategy.ReserveStarPhase(c.Query.Length + c.DecodeBudget);
            var ids = plan.LocalIds(Index, c.Context, c.Query, _options.PadTokenId);
            var logits = Model.Forward(ids, new LayerGate(strategy, this, stage, cancel), c.AllLogits ? LogitsFor.All : LogitsFor.None);
            if (c.AllLogits)
            {
                Doing = "gathering context logits";
                contextLogits = GatherContextLogits(plan, logits!);
            }
            Retaining?.ReleaseBuffers();
        }
        var phase = seq.UsePhase(new StarPhaseAttention(Backend, _config, Model.Rope, Comm, seq.Caches, plan.ContextLength)
            { Profile = seq.PrefillProfile });
        if (c.Query.Length == 0) return contextLogits;
        Doing = "query (star phase)";
        var q = Model.Forward(c.Query, new LayerGate(phase, this, "query, star phase", cancel), c.AllLogits ? LogitsFor.All : LogitsFor.Last)!;
        phase.Advance(c.Query.Length);
        if (Index != 0) { q.Dispose(); return null; }
        var ql = Download(q);
        if (!c.AllLogits) return ql;
        // Only rank 0 has the context's rows in position order.
        return contextLogits is null ? null : [.. contextLogits, .. ql];
    }

    /// <summary>The real block rows' logits of every rank, all-gathered, put in position order on rank 0.</summary>
    float[]? GatherContextLogits(SequencePlan plan, Tensor logits)
    {
        int vocab = logits.Cols;
        var counts = Enumerable.Range(0, plan.Ranks).Select(plan.RealRows).ToArray();
        using var all = Backend.Allocate(plan.ContextLength, vocab);
        // A debugging path, not part of any strategy's cost: keep it out of the timings.
        var profile = Comm.Profile;
        Comm.Profile = null;
        try { Comm.AllGather(logits.RowSlice(plan.AnchorRows(Index), counts[Index]), all, counts); }
        finally { Comm.Profile = profile; }
        logits.Dispose();
        var rows = new float[(long)plan.ContextLength * vocab];
        Backend.Download(all, rows);
        if (Index != 0) return null;
        var ordered = new float[rows.Length];
        int at = 0;
        for (int r = 0; r < plan.Ranks; r++)
        {
            var pos = plan.Positions(r);
            for (int i = 0; i < counts[r]; i++, at++)
                rows.AsSpan(at * vocab, vocab).CopyTo(ordered.AsSpan(pos[i] * vocab, vocab));
        }
        return ordered;
    }

    /// <summary>The next chunk of a full-attention sequence's prompt: its cache grows by the chunk.</summary>
    float[]? Extend(GroupCommand.Extend c)
    {
        var seq = Sequence(c.Sequence);
        if (seq.Plan.Distributed) throw new InvalidOperationException($"sequence {c.Sequence} is distributed: only full attention prefills in chunks");
        if (c.Tokens.Length == 0) throw new ArgumentException("an empty chunk");
        Doing = $"prefill chunk of {c.Tokens.Length} tokens";
        var logits = Model.Forward(c.Tokens, new LayerGate(seq.Decoding, this, Doing, null), c.Logits ? LogitsFor.Last : LogitsFor.None);
        Doing = "idle";
        return logits is null ? null : Download(logits);
    }

    // ------------------------------------------------------------------------------------------------ decode

    float[]? Decode(GroupCommand.Decode c)
    {
        if (c.Sequences.Length != c.Tokens.Length) throw new ArgumentException($"{c.Sequences.Length} sequences but {c.Tokens.Length} tokens");
        var held = new List<(RankSequence Seq, int Token)>();
        for (int i = 0; i < c.Sequences.Length; i++)
            if (_sequences.TryGetValue(c.Sequences[i], out var s)) held.Add((s, c.Tokens[i]));
        if (held.Count == 0) return null;
        foreach (var (_, token) in held)
            if ((uint)token >= (uint)_config.VocabSize)
                throw new ApbException($"token id {token} is outside the vocabulary (0..{_config.VocabSize - 1})");
        string stage = held.Count == 1 ? $"decode step {held[0].Seq.DecodeSteps + 1}" : $"decode step of {held.Count} sequences";
        Doing = stage;
        SetProfile(_decodeProfile, held);
        try
        {
            var attention = held.Count == 1
                ? new LayerGate(held[0].Seq.Decoding, this, stage, null)
                : new LayerGate(new BatchAttention(held.Select(h => (h.Seq.Decoding, 1)).ToArray()), this, stage, null);
            // Only rank 0 samples: the others skip the LM head (a vocabulary-wide GEMM per row) altogether.
            var want = Index != 0 ? LogitsFor.None : held.Count == 1 ? LogitsFor.Last : LogitsFor.All;
            var logits = Model.Forward(held.Select(h => h.Token).ToArray(), attention, want);
            foreach (var (s, _) in held) { s.Advance(1); s.DecodeSteps++; }
            Doing = "idle";
            if (logits is null) return null;
            if (Index != 0) { logits.Dispose(); return null; }
            if (!c.Greedy) return Download(logits);
            // Token ids as floats are exact below 2^24; every vocabulary is far below that (checked at load).
            var ids = new int[held.Count];
            using (logits) Backend.ArgMaxRows(logits, ids);
            return ids.Select(i => (float)i).ToArray();
        }
        finally
        {
            SetProfile(null, held);
        }
    }

    /// <summary>
    /// This rank's <see cref="RankReport"/> values for the sequence; for a distributed one, every rank's, all-gathered
    /// (rank-major, <see cref="RankReport.ValueCount"/> each). Rank 0 returns them.
    /// </summary>
    float[]? Report(int sequence)
    {
        _sequences.TryGetValue(sequence, out var seq);
        var mem = Backend.Memory;
        double[] mine = [seq?.PrefillProfile is { } p ? 1 : 0, .. (seq?.PrefillProfile ?? new Profile()).ToValues(),
            _decodeProfile is null ? 0 : 1, .. (_decodeProfile ?? new Profile()).ToValues(), mem.InUseBytes, mem.PeakBytes];
        var values = mine.Select(x => (float)x).ToArray();
        if (seq is null || !seq.Plan.Distributed) return Index == 0 ? values : null;
        return GatherToLeader(values);
    }

    /// <summary>
    /// Every rank's memory as [in use, peak, device, available bytes, sequences held, KV-cache bytes held],
    /// all-gathered to rank 0 (rank-major, <see cref="RankMemoryUse.ValueCount"/> each).
    /// </summary>
    float[]? GatherMemory(bool resetPeak)
    {
        Backend.Synchronize();
        if (resetPeak) Backend.ResetPeakMemory();
        var m = Backend.Memory;
        // Bytes as fp32 keep 24 bits: to within 1e-7 relative, enough for GiB-sized budgets (and 0 stays exactly 0).
        float[] mine = [m.InUseBytes, m.PeakBytes, m.DeviceBytes, m.AvailableBytes, _sequences.Count, _sequences.Values.Sum(s => s.KvBytes)];
        return Comm.WorldSize == 1 ? mine : GatherToLeader(mine);
    }

    /// <summary>
    /// Every rank's <paramref name="mine"/> all-gathered, rank-major, returned on rank 0 (null elsewhere). Reports are
    /// not the work being profiled: the collective stays out of the step's profile.
    /// </summary>
    float[]? GatherToLeader(float[] mine)
    {
        using var send = Backend.AllocateF32(1, mine.Length);
        using var all = Backend.AllocateF32(Comm.WorldSize, mine.Length);
        Backend.Upload(mine, send);
        var profile = Comm.Profile;
        Comm.Profile = null;
        try { Comm.AllGather(send, all); }
        finally { Comm.Profile = profile; }
        if (Index != 0) return null;
        var result = new float[Comm.WorldSize * mine.Length];
        Backend.Download(all, result);
        return result;
    }

    internal void Release(IEnumerable<int> sequences)
    {
        foreach (int id in sequences)
            if (_sequences.Remove(id, out var s)) s.Dispose();
    }

    // ------------------------------------------------------------------------------------------------ helpers

    void SetProfile(Profile? p, List<(RankSequence Seq, int Token)>? decoding)
    {
        Model.Profile = p;
        Comm.Profile = p;
        if (decoding != null) foreach (var (s, _) in decoding) s.SetProfile(p);
    }

    // Every logits tensor downloaded here was made for this one step; a device backend holds its memory until disposed.
    float[] Download(Tensor t)
    {
        var r = new float[(long)t.Rows * t.Cols];
        Backend.Download(t, r);
        t.Dispose();
        return r;
    }

    static string Name(StrategyKind k) => k.Name();

    /// <summary>Frees every sequence this rank holds (after a failure the group cannot vouch for them).</summary>
    internal void ReleaseAll() => Release(_sequences.Keys.ToArray());

    public void Dispose()
    {
        ReleaseAll();
        Retaining?.ReleaseBuffers();
        Model.Dispose();
        Comm.Dispose();
        if (_ownsBackend) Backend.Dispose();
    }

    // ------------------------------------------------------------------------------------------------ per layer

    /// <summary>Stops a prefill between layers when its client has gone.</summary>
    interface ICancelCheck
    {
        void Check();
    }

    /// <summary>One rank alone: stop when the leader's flag is set.</summary>
    sealed class LocalCancel(Func<bool> cancelled) : ICancelCheck
    {
        public void Check()
        {
            if (cancelled()) throw new OperationCanceledException("the request was cancelled during prefill");
        }
    }

    /// <summary>
    /// Ranks must stop at the same layer, or the ones that go on wait in a collective for the ones that stopped: rank 0
    /// broadcasts its flag at every layer and all of them act on what it says.
    /// </summary>
    sealed class AgreedCancel(Rank rank, Func<bool> cancelled) : ICancelCheck
    {
        readonly float[] _flag = new float[1];

        public void Check()
        {
            var b = rank.Backend;
            using var t = b.AllocateF32(1, 1);
            _flag[0] = rank.Index == 0 && cancelled() ? 1 : 0;
            if (rank.Index == 0) b.Upload(_flag, t);
            var profile = rank.Comm.Profile;
            rank.Comm.Profile = null;
            try { rank.Comm.Broadcast(t, 0); }
            finally { rank.Comm.Profile = profile; }
            b.Download(t, _flag);
            if (_flag[0] != 0) throw new OperationCanceledException("the request was cancelled during prefill");
        }
    }

    /// <summary>Says what the rank is doing (for errors) and checks for cancellation around each layer's attention.</summary>
    sealed class LayerGate(IAttention inner, Rank rank, string stage, ICancelCheck? cancel) : IAttention
    {
        public void Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor output)
        {
            rank.Doing = $"layer {layer} attention ({stage})";
            cancel?.Check();
            inner.Attend(layer, q, k, v, output);
            rank.Doing = $"layer {layer} o_proj/ffn ({stage})";
        }
    }
}
