using Apb.Backends;
using Apb.Checkpoints;
using Apb.Diagnostics;
using Apb.Engine;
using Apb.Model;

namespace Apb.Distributed;

/// <summary>
/// One request on H ranks, each a thread with its own backend, model instance (weights shared), strategy and KV caches,
/// talking through an <see cref="InProcessGroup"/>. Prefill runs the context with the chosen strategy, then the query
/// through the exact <see cref="StarPhaseAttention"/>; Decode runs one token the same way. Rank 0 plays the caller's
/// part: it receives the sampled token and broadcasts it, and its logits are returned (all ranks hold the same ones).
/// In process-group mode (the constructor taking a communicator, for `apb launch`) the session is ONE rank of a group
/// whose other ranks are other processes: the same code runs for this rank alone, over the given communicator.
/// </summary>
public sealed class DistributedSession : IInferenceSession
{
    readonly ModelConfig _config;
    readonly LlamaWeights _weights;
    readonly Func<int, IBackend> _backendFactory;
    readonly RetainingHeads? _heads;
    RankState[] _ranks = [];
    InProcessGroup? _group;
    // Process-group mode: this process's backend and its end of the communicator (null: all ranks are threads here).
    readonly (IBackend Backend, ICommunicator Comm)? _process;
    bool _started;
    string? _failure;
    int _decodeSteps;

    public StrategyOptions Options { get; }
    /// <summary>The strategy that ran: the requested one, or Full when the context was below the fallback threshold.</summary>
    public StrategyKind Strategy { get; private set; }
    public int Ranks { get; private set; }
    /// <summary>False on the ranks other than 0 of a process group: their Prefill/AllLogits return no logits to report.</summary>
    public bool ReportsResults => _process is null || _process.Value.Comm.Rank == 0;
    /// <summary>Which rank held which tokens (null for Full).</summary>
    public SequencePlan? Plan { get; private set; }
    public int Length { get; private set; }
    /// <summary>Why the strategy that ran differs from the one asked for (the short-context fallback), else null.</summary>
    public string? Note { get; private set; }
    /// <summary>Per rank, what the prefill (context and query) cost; null unless <see cref="StrategyOptions.Timings"/>.</summary>
    public IReadOnlyList<Profile>? PrefillProfiles { get; private set; }
    /// <summary>Per rank, what all decode steps so far cost; null unless <see cref="StrategyOptions.Timings"/>.</summary>
    public IReadOnlyList<Profile>? DecodeProfiles { get; private set; }

    /// <summary>Test hook: called on the rank's thread before each layer's attention, (rank, layer).</summary>
    internal Action<int, int>? BeforeAttention { get; set; }

    /// <param name="backendFactory">a backend for rank r (a device backend picks GPU r)</param>
    public DistributedSession(ModelConfig config, LlamaWeights weights, Func<int, IBackend> backendFactory, StrategyOptions options)
    {
        options.Validate(config);
        _config = config; _weights = weights; _backendFactory = backendFactory; Options = options;
        Strategy = options.Strategy;
        if (options.Strategy == StrategyKind.Apb && options.Scorer == ScorerKind.Retaining)
            _heads = RetainingHeads.Open(options.RetainingHeadsPath!, config);
    }

    /// <summary>
    /// Process-group mode: this process is rank <c>comm.Rank</c> of <c>comm.WorldSize</c> (one GPU each, NCCL), with its own
    /// backend; options.Ranks must equal the world size. The session owns both and disposes them.
    /// </summary>
    public DistributedSession(ModelConfig config, LlamaWeights weights, IBackend backend, ICommunicator comm, StrategyOptions options)
        : this(config, weights, _ => backend, options)
    {
        if (options.Ranks != comm.WorldSize)
            throw new ApbException($"--ranks {options.Ranks} differs from the {comm.WorldSize} processes launched: under apb launch, --ranks must equal --nproc-per-node x --nnodes (or be left out)");
        _process = (backend, comm);
    }

    sealed class RankState(int rank, IBackend backend, LlamaModel model, ICommunicator comm)
    {
        public readonly int Rank = rank;
        public readonly IBackend Backend = backend;
        public readonly LlamaModel Model = model;
        public readonly ICommunicator Comm = comm;
        public SequenceParallelAttention? Strategy;
        public FullAttention? Full;
        public StarPhaseAttention? Phase;
        public Profile? PrefillProfile, DecodeProfile;
        public volatile string Doing = "setup";
    }

    /// <summary>Sets Doing for error messages and runs the test hook around the strategy's attention.</summary>
    sealed class RankAttention(IAttention inner, RankState rank, string stage, Action<int, int>? hook) : IAttention
    {
        public void Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor output)
        {
            rank.Doing = $"layer {layer} attention ({stage})";
            hook?.Invoke(rank.Rank, layer);
            inner.Attend(layer, q, k, v, output);
            rank.Doing = $"layer {layer} o_proj/ffn ({stage})";
        }
    }

    public float[] Prefill(IReadOnlyList<int> context, IReadOnlyList<int> query)
    {
        // An empty query moves the last context token into the exact phase, which is where the logits come from.
        if (MovesLastContextToken(context.Count, query.Count))
        {
            query = [context[^1]];
            context = context.Take(context.Count - 1).ToArray();
        }
        if (query.Count == 0) throw new ApbException("nothing to prefill: both context and query are empty");
        return RunPrefill(context, query, allLogits: false);
    }

    /// <summary>
    /// Logits for every position of context + query, [(n + q) x vocab] row-major: context rows gathered from the ranks in
    /// position order (anchor and pad rows dropped), query rows from the star phase. For comparing strategies with Full.
    /// </summary>
    public float[] AllLogits(IReadOnlyList<int> context, IReadOnlyList<int> query) => RunPrefill(context, query, allLogits: true);

    /// <summary>One process per rank: rank 0's token, broadcast. In-process ranks share one decode loop already.</summary>
    public int Agree(int token)
    {
        if (_process is null || Ranks == 1) return token;
        CheckUsable(prefilled: true);
        return RunRanks(rk =>
        {
            rk.Doing = "agreeing on the next token";
            var t = rk.Backend.AllocateF32(1, 1);
            if (rk.Rank == 0) rk.Backend.Upload([token], t);
            rk.Comm.Broadcast(t, 0);
            return (int)Download(rk.Backend, t)[0];
        })[0];
    }

    public float[] Decode(int token)
    {
        CheckUsable(prefilled: true);
        if ((uint)token >= (uint)_config.VocabSize)
            throw new ApbException($"token id {token} is outside the vocabulary (0..{_config.VocabSize - 1})");
        int step = ++_decodeSteps;
        var results = RunRanks(rk =>
        {
            rk.Doing = $"decode step {step}";
            int id = token;
            if (Ranks > 1)
            {
                // Token ids are below 2^24, so they travel exactly as one fp32 (not in the activation type: bf16 keeps 8 bits).
                var t = rk.Backend.AllocateF32(1, 1);
                if (rk.Rank == 0) rk.Backend.Upload([token], t);
                rk.Comm.Broadcast(t, 0);
                id = (int)Download(rk.Backend, t)[0];
            }
            var attention = (IAttention?)rk.Full ?? rk.Phase!;
            var logits = rk.Model.Forward([id], new RankAttention(attention, rk, $"decode step {step}", BeforeAttention), LogitsFor.Last)!;
            rk.Phase?.Advance(1);
            // Every rank holds the same row: a process-group rank samples from its own.
            return Download(rk.Backend, logits);
        });
        Length++;
        return results[0]!;
    }

    float[] RunPrefill(IReadOnlyList<int> context, IReadOnlyList<int> query, bool allLogits)
    {
        CheckUsable(prefilled: false);
        int n = context.Count;
        var o = Options;
        (Strategy, Plan) = PlanFor(o, n, query.Count);
        int ranks = Plan?.Ranks ?? 1;
        Note = Strategy == o.Strategy ? null
            : $"{o.Strategy.ToString().ToLowerInvariant()}: the context of {n} tokens is below {o.FallbackBelow} (StrategyOptions.FallbackBelow), so full attention ran on one rank";

        _started = true;
        Ranks = ranks;
        // In a process group every process runs its own rank; after the short-context fallback each runs full attention
        // alone (no communication) and rank 0 reports.
        var local = _process is { } pg ? new[] { pg.Comm.Rank } : Enumerable.Range(0, ranks).ToArray();
        if (_process is null) _group = new InProcessGroup(ranks, o.CollectiveTimeout);
        _ranks = new RankState[local.Length];
        for (int i = 0; i < local.Length; i++)
        {
            int r = local[i];
            var backend = _process?.Backend ?? _backendFactory(r);
            var rk = new RankState(r, backend, new LlamaModel(_config, _weights, backend), _process?.Comm ?? _group!.Communicator(r, backend));
            if (o.Timings)
            {
                rk.PrefillProfile = new Profile(backend);
                rk.DecodeProfile = new Profile(backend);
            }
            _ranks[i] = rk;
        }
        PrefillProfiles = o.Timings ? _ranks.Select(r => r.PrefillProfile!).ToArray() : null;
        DecodeProfiles = o.Timings ? _ranks.Select(r => r.DecodeProfile!).ToArray() : null;

        string stage = $"{Strategy.ToString().ToLowerInvariant()} prefill";
        var results = RunRanks(rk =>
        {
            SetProfile(rk, rk.PrefillProfile);
            var result = Strategy == StrategyKind.Full
                ? FullPrefill(rk, context, query, allLogits, stage)
                : ParallelPrefill(rk, context, query, allLogits, stage);
            SetProfile(rk, rk.DecodeProfile);
            return result;
        });
        Length = n + query.Count;
        return results[0]!;
    }

    static bool MovesLastContextToken(int contextLength, int queryLength) => queryLength == 0 && contextLength > 0;

    /// <summary>
    /// Throws the ApbException <see cref="Prefill"/> of a prompt this long would fail with (too few tokens for the ranks,
    /// a query longer than APB's anchor): a server checks a request here before the request takes a run slot.
    /// </summary>
    public static void CheckPrefill(StrategyOptions o, int contextLength, int queryLength)
    {
        if (MovesLastContextToken(contextLength, queryLength)) (contextLength, queryLength) = (contextLength - 1, 1);
        PlanFor(o, contextLength, queryLength);
    }

    /// <summary>The strategy that runs (Full below the fallback threshold) and its plan (null for Full), checked.</summary>
    static (StrategyKind Strategy, SequencePlan? Plan) PlanFor(StrategyOptions o, int n, int queryLength)
    {
        var strategy = (o.Strategy is StrategyKind.Apb or StrategyKind.Star) && n < o.FallbackBelow ? StrategyKind.Full : o.Strategy;
        var plan = strategy switch
        {
            StrategyKind.Full => null,
            StrategyKind.Ring or StrategyKind.Ulysses => SequencePlan.Contiguous(n, o.Ranks),
            StrategyKind.Zigzag => SequencePlan.Zigzag(n, o.Ranks),
            StrategyKind.Star => SequencePlan.Star(n, o.Ranks),
            _ => ApbPlan(o, n, o.Ranks, queryLength),
        };
        if (strategy == StrategyKind.Full && n + queryLength == 0) throw new ApbException("nothing to prefill: both context and query are empty");
        // Retaining heads are opened exactly for APB with the retaining scorer; every other APB run scores by the query.
        if (strategy == StrategyKind.Apb) ApbAttention.CheckScorer(plan!, queryAware: o.Scorer != ScorerKind.Retaining);
        return (strategy, plan);
    }

    static SequencePlan ApbPlan(StrategyOptions o, int n, int ranks, int queryLength)
    {
        var (anchor, passing) = ApbDefaults.For(n, ranks);
        int lb = (n + ranks - 1) / Math.Max(ranks, 1);
        // The paper's l_a = n/32 is shorter than header + query at short lengths: a default anchor grows to hold them
        // plus the first MinAnchorContext context tokens (when the block allows); an explicit one is kept as given.
        if (o.AnchorLength is null && anchor > 0 && ranks > 1)
            anchor = Math.Min(Math.Max(anchor, o.AnchorInsertAt + queryLength + ApbDefaults.MinAnchorContext), lb);
        return SequencePlan.Apb(n, ranks, o.AnchorLength ?? anchor, o.PassingLength ?? passing, queryLength, o.AnchorInsertAt);
    }

    float[]? FullPrefill(RankState rk, IReadOnlyList<int> context, IReadOnlyList<int> query, bool allLogits, string stage)
    {
        rk.Doing = stage;
        rk.Full = new FullAttention(rk.Backend, _config, rk.Model.Rope, context.Count + query.Count + 64) { Profile = rk.PrefillProfile };
        var ids = context.Concat(query).ToArray();
        var logits = rk.Model.Forward(ids, new RankAttention(rk.Full, rk, stage, BeforeAttention), allLogits ? LogitsFor.All : LogitsFor.Last)!;
        return Download(rk.Backend, logits);
    }

    float[]? ParallelPrefill(RankState rk, IReadOnlyList<int> context, IReadOnlyList<int> query, bool allLogits, string stage)
    {
        var plan = Plan!;
        rk.Doing = stage;
        rk.Strategy = CreateStrategy(rk, plan);
        rk.Strategy.ReserveStarPhase(query.Count);
        rk.Strategy.Profile = rk.PrefillProfile;
        var ids = plan.LocalIds(rk.Rank, context, query, Options.PadTokenId);
        var logits = rk.Model.Forward(ids, new RankAttention(rk.Strategy, rk, stage, BeforeAttention), allLogits ? LogitsFor.All : LogitsFor.None);

        float[]? contextLogits = null;
        if (allLogits)
        {
            rk.Doing = "gathering context logits";
            contextLogits = GatherContextLogits(rk, plan, logits!);
        }

        rk.Phase = new StarPhaseAttention(rk.Backend, _config, rk.Model.Rope, rk.Comm, rk.Strategy.Caches, plan.ContextLength)
            { Profile = rk.PrefillProfile };
        if (query.Count == 0) return contextLogits;
        rk.Doing = "query (star phase)";
        var q = rk.Model.Forward(query.ToArray(), new RankAttention(rk.Phase, rk, "query, star phase", BeforeAttention),
            allLogits ? LogitsFor.All : LogitsFor.Last)!;
        rk.Phase.Advance(query.Count);
        var ql = Download(rk.Backend, q);
        // Every rank holds the query's logits (a process-group rank needs them to sample); only rank 0 has the context's.
        if (rk.Rank != 0) return allLogits ? null : ql;
        return contextLogits is null ? ql : [.. contextLogits, .. ql];
    }

    SequenceParallelAttention CreateStrategy(RankState rk, SequencePlan plan) => Strategy switch
    {
        StrategyKind.Ring => new RingAttention(rk.Backend, _config, rk.Model.Rope, plan, rk.Comm) { Overlap = Options.Overlap },
        StrategyKind.Zigzag => new ZigzagRingAttention(rk.Backend, _config, rk.Model.Rope, plan, rk.Comm) { Overlap = Options.Overlap },
        StrategyKind.Ulysses => new UlyssesAttention(rk.Backend, _config, rk.Model.Rope, plan, rk.Comm),
        StrategyKind.Star => new StarAttention(rk.Backend, _config, rk.Model.Rope, plan, rk.Comm),
        StrategyKind.Apb => new ApbAttention(rk.Backend, _config, rk.Model.Rope, plan, rk.Comm,
            _heads is null ? null : new RetainingHeadScorer(rk.Backend, _config, _heads)) { Overlap = Options.Overlap },
        _ => throw new InvalidOperationException($"no sequence-parallel strategy for {Strategy}"),
    };

    /// <summary>The real block rows' logits of every rank, all-gathered, put in position order on rank 0.</summary>
    float[]? GatherContextLogits(RankState rk, SequencePlan plan, Tensor logits)
    {
        int vocab = logits.Cols;
        var counts = Enumerable.Range(0, plan.Ranks).Select(plan.RealRows).ToArray();
        var all = rk.Backend.Allocate(plan.ContextLength, vocab);
        // A debugging path, not part of any strategy's cost: keep it out of the timings.
        var profile = rk.Comm.Profile;
        rk.Comm.Profile = null;
        try { rk.Comm.AllGather(logits.RowSlice(plan.AnchorRows(rk.Rank), counts[rk.Rank]), all, counts); }
        finally { rk.Comm.Profile = profile; }
        var rows = Download(rk.Backend, all);
        if (rk.Rank != 0) return null;
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

    static void SetProfile(RankState rk, Profile? p)
    {
        rk.Model.Profile = p;
        rk.Comm.Profile = p;
        if (rk.Strategy != null) rk.Strategy.Profile = p;
        if (rk.Full != null) rk.Full.Profile = p;
        if (rk.Phase != null) rk.Phase.Profile = p;
    }

    // Every tensor downloaded here was made for this one step; a GPU backend holds device memory until it is disposed.
    static float[] Download(IBackend b, Tensor t)
    {
        var r = new float[t.Rows * t.Cols];
        b.Download(t, r);
        (t as IDisposable)?.Dispose();
        return r;
    }

    T[] RunRanks<T>(Func<RankState, T> body)
    {
        if (_process is { } pg) return RunLocalRank(body, pg.Comm);
        try
        {
            return _group!.Run(r => body(_ranks[r]), r => _ranks[r].Doing);
        }
        catch (ApbException e)
        {
            _failure = e.Message;
            throw;
        }
    }

    /// <summary>
    /// Process-group mode: the body runs on this thread for this rank alone. A failure aborts the communicator, so the
    /// other processes' waits end (at the latest at their collective timeout) instead of hanging.
    /// </summary>
    T[] RunLocalRank<T>(Func<RankState, T> body, ICommunicator comm)
    {
        var rk = _ranks[0];
        try
        {
            return [body(rk)];
        }
        catch (Exception e)
        {
            if (e is AggregateException { InnerExceptions.Count: 1 } agg) e = agg.InnerExceptions[0];
            string msg = e is ApbException ? e.Message : $"{e.GetType().Name}: {e.Message}";
            _failure = $"rank {rk.Rank} failed in {rk.Doing}: {msg}";
            (comm as NcclCommunicator)?.Abort(_failure);
            throw new ApbException(_failure, e);
        }
    }

    void CheckUsable(bool prefilled)
    {
        if (_failure != null) throw new InvalidOperationException($"this session failed earlier and cannot continue: {_failure}");
        if (prefilled && !_started) throw new InvalidOperationException("Decode before Prefill");
        if (!prefilled && _started) throw new InvalidOperationException("a session serves one request: Prefill was already called");
    }

    /// <summary>Per rank, the KV rows held for layer 0 (after prefill: the rank's own real block rows).</summary>
    internal int[] CacheLengths() =>
        _ranks.Select(r => r.Full?.Length ?? r.Phase?.Caches[0].Length ?? 0).ToArray();

    /// <summary>The per-rank timing table of the prefill (and of the decode steps, when there were any).</summary>
    public string FormatTimings()
    {
        if (PrefillProfiles is null) return "timings were not recorded (set StrategyOptions.Timings)";
        string what = $"{Strategy.ToString().ToLowerInvariant()}, {Ranks} rank(s)" + (Plan is null ? "" : $", {Plan}");
        int first = _process?.Comm.Rank ?? 0;
        var text = RankProfileTable.Format($"prefill: {what}", PrefillProfiles, first);
        if (_decodeSteps > 0) text += Environment.NewLine + RankProfileTable.Format($"decode: {_decodeSteps} step(s)", DecodeProfiles!, first);
        return text;
    }

    public void Dispose()
    {
        if (_process is { } pg)
        {
            pg.Comm.Dispose();
            // After a failure the device may still be busy with work that waits on an aborted transfer; synchronizing
            // would hang, and the process is about to exit, which frees the GPU anyway.
            if (_failure is null) pg.Backend.Dispose();
            _ranks = [];
            _heads?.Dispose();
            return;
        }
        foreach (var r in _ranks)
        {
            r.Comm.Dispose();
            r.Backend.Dispose();
        }
        _ranks = [];
        _heads?.Dispose();
    }
}
