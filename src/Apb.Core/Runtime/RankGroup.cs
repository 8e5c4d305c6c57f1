using Apb.Backends;
using Apb.Checkpoints;
using Apb.Comms;
using Apb.Model;
using Apb.Runtime.Launch;
using Apb.Strategies;
using Apb.Strategies.Apb;

namespace Apb.Runtime;

/// <summary>What one prefill needs besides the tokens.</summary>
/// <param name="AnchorInsertAt">context tokens before APB's query in the anchor (the chat header); null: the group's default</param>
/// <param name="DecodeBudget">tokens the request may still generate: their cache rows are reserved before the prefill</param>
/// <param name="AllLogits">logits for every position (comparing strategies), not only the last</param>
/// <param name="Options">this request's strategy and lengths instead of the group's (same rank count and scorer)</param>
public sealed record PrefillRequest(IReadOnlyList<int> Context, IReadOnlyList<int> Query, int? AnchorInsertAt = null,
    int DecodeBudget = PrefillRequest.DefaultDecodeBudget, bool AllLogits = false, StrategyOptions? Options = null)
{
    public const int DefaultDecodeBudget = 256;
}

/// <summary>A prefilled sequence: its id for decode steps and release, its logits, and how it ran.</summary>
public sealed record PrefillResult(int Sequence, float[] Logits, PrefillPlan Plan);

/// <summary>
/// A set of ranks that lives as long as the server or command that made it: each rank owns its backend, its copy of
/// the weights and the caches of the sequences it holds. A request is a sequence handed to the group: a prefill with
/// the group's strategy (or full attention on rank 0 alone, below the fallback length), decode steps (batched over
/// sequences), then a release that frees its caches while the weights stay.
/// The ranks are threads of this process (<see cref="Create"/>; rank r on the backend the factory gives it), or one
/// process per rank (<see cref="Join"/>; under `apb launch`): then rank 0 leads, sending each command to the other
/// ranks over a <see cref="ControlChannel"/> before running it itself, and the others <see cref="Follow"/>.
/// A request that fails is freed on every rank; with threads the group stays usable. A failed rank in a process group
/// (a dead process, a communicator error) fails the whole group, which then refuses every call with the reason.
/// Calls are serialized: one command runs at a time.
/// </summary>
public sealed class RankGroup : IDisposable
{
    readonly Rank[] _ranks;                 // every rank (threads) or this process's rank
    readonly InProcessGroup? _threads;
    readonly ControlChannel? _control;
    readonly RetainingHeads? _heads;
    readonly object _lock = new();
    int _nextSequence = 1;
    volatile bool _cancelRequested;
    volatile string? _failure;
    bool _disposed;

    public ModelConfig Config { get; }
    public StrategyOptions Options { get; }
    /// <summary>Ranks in the whole group (all processes).</summary>
    public int WorldSize { get; }
    /// <summary>This process's ranks: all of them with threads, one in a process group.</summary>
    public IReadOnlyList<Rank> LocalRanks => _ranks;
    /// <summary>False on ranks 1.. of a process group: they serve the leader's commands (<see cref="Follow"/>).</summary>
    public bool IsLeader => _control is null || _control.IsLeader;
    /// <summary>Why the group is unusable, or null.</summary>
    public string? Failure => _failure;

    /// <summary>Raised once when the group fails (a dead rank, a communicator error), with the reason; on any thread.</summary>
    public event Action<string>? Failed;

    RankGroup(ModelConfig config, StrategyOptions options, Rank[] ranks, InProcessGroup? threads, ControlChannel? control,
        RetainingHeads? heads, int worldSize)
    {
        Config = config; Options = options; _ranks = ranks; _threads = threads; _control = control; _heads = heads;
        WorldSize = worldSize;
    }

    /// <summary>
    /// Ranks as threads of this process: rank r gets <paramref name="backendFor"/>(r) and weights from
    /// <paramref name="weightsFor"/>, called once per device (ranks whose backends share a name, e.g. "cuda:0", share one
    /// copy). The group disposes the backends unless <paramref name="ownsBackends"/> is false (the caller keeps them).
    /// </summary>
    public static RankGroup Create(ModelConfig config, StrategyOptions options, Func<int, IBackend> backendFor,
        Func<IBackend, LlamaWeights> weightsFor, bool ownsBackends = true)
    {
        options.Validate(config);
        int n = options.Ranks;
        var threads = new InProcessGroup(n, options.CollectiveTimeout);
        var ranks = new List<Rank>();
        var weights = new Dictionary<string, LlamaWeights>(StringComparer.Ordinal);
        RetainingHeads? heads = null;
        try
        {
            heads = OpenHeads(config, options);
            for (int r = 0; r < n; r++)
            {
                var backend = backendFor(r);
                try
                {
                    if (!weights.TryGetValue(backend.Name, out var w)) weights[backend.Name] = w = weightsFor(backend);
                    ranks.Add(new Rank(r, backend, ownsBackends, new LlamaModel(config, w, backend), threads.Communicator(r, backend),
                        config, options, heads));
                }
                catch
                {
                    if (ownsBackends) backend.Dispose();
                    throw;
                }
            }
            return new RankGroup(config, options, [.. ranks], threads, null, heads, n);
        }
        catch
        {
            foreach (var r in ranks) r.Dispose();
            heads?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// This process's rank of a process group: <paramref name="comm"/> reaches the other processes' ranks, and
    /// <paramref name="control"/> is the leader's channel (rank 0) or this follower's. The group owns all of them.
    /// </summary>
    public static RankGroup Join(ModelConfig config, StrategyOptions options, IBackend backend, LlamaWeights weights,
        ICommunicator comm, Func<Action<int, string>, ControlChannel> control)
    {
        options.Validate(config);
        if (options.Ranks != comm.WorldSize)
            throw new ApbException($"--ranks {options.Ranks} differs from the {comm.WorldSize} processes launched: under apb launch, --ranks must equal --nproc-per-node x --nnodes (or be left out)");
        RetainingHeads? heads = null;
        Rank? rank = null;
        try
        {
            heads = OpenHeads(config, options);
            rank = new Rank(comm.Rank, backend, ownsBackend: true, new LlamaModel(config, weights, backend), comm, config, options, heads);
            RankGroup? group = null;
            var channel = control((r, why) => group?.FollowerLost(r, why));
            group = new RankGroup(config, options, [rank], null, channel, heads, comm.WorldSize);
            return group;
        }
        catch
        {
            if (rank is not null) rank.Dispose();
            else { comm.Dispose(); backend.Dispose(); }
            heads?.Dispose();
            throw;
        }
    }

    static RetainingHeads? OpenHeads(ModelConfig config, StrategyOptions o) =>
        o.Strategy.MayRunApb() && o.Scorer.UsesHeads() ? RetainingHeads.Open(o.RetainingHeadsPath!, config) : null;

    // ------------------------------------------------------------------------------------------------ leader API

    /// <summary>
    /// What a request would run, without running it: the plan, or the error that refuses the request. A prompt with no
    /// query is planned as its prefill runs it, with the context's last token as the query (<see cref="Prefill"/>).
    /// </summary>
    public PrefillPlan Plan(int contextLength, int queryLength, int? anchorInsertAt = null, StrategyOptions? options = null)
    {
        if (queryLength == 0 && contextLength > 0) (contextLength, queryLength) = (contextLength - 1, 1);
        return PlanAsGiven(contextLength, queryLength, anchorInsertAt, options);
    }

    PrefillPlan PlanAsGiven(int contextLength, int queryLength, int? anchorInsertAt, StrategyOptions? options)
    {
        var o = RequestOptions(options);
        return SequencePlanner.Plan(o, contextLength, queryLength, anchorInsertAt ?? o.AnchorInsertAt);
    }

    /// <summary>
    /// A request may run another strategy or other lengths than the group's default (a benchmark or an accuracy run
    /// compares them on one set of ranks), but not on another rank count or scorer: those are the group's.
    /// </summary>
    StrategyOptions RequestOptions(StrategyOptions? o)
    {
        if (o is null) return Options;
        if (o.Strategy != StrategyKind.Full && o.Ranks != WorldSize)
            throw new ApbException($"a request for {o.Ranks} rank(s) on a group of {WorldSize}: make a group of {o.Ranks} rank(s) for it");
        bool retaining = o.Strategy.MayRunApb() && o.Scorer.UsesHeads();
        if (retaining && _heads is null)
            throw new ApbException("a request with the retaining-heads scorer on a group made without them: make the group with --scorer retaining");
        return o;
    }

    /// <summary>
    /// Prefills a new sequence (a prompt with no query lends the context's last token to the query, whose exact phase
    /// gives the logits). A request the plan refuses throws before any rank does work. <paramref name="cancel"/>
    /// stops the prefill between layers (every rank at the same layer) and frees what it held.
    /// </summary>
    public PrefillResult Prefill(PrefillRequest request, CancellationToken cancel = default)
    {
        // The logits come from the query's exact phase: a prompt with no query lends it the context's last token.
        if (request.Query.Count == 0 && request.Context.Count > 0 && !request.AllLogits)
            request = request with { Context = request.Context.Take(request.Context.Count - 1).ToArray(), Query = [request.Context[^1]] };
        var plan = PlanAsGiven(request.Context.Count, request.Query.Count, request.AnchorInsertAt, request.Options);
        if (request.DecodeBudget < 0) throw new ArgumentException($"decode budget {request.DecodeBudget} is negative");
        lock (_lock)
        {
            CheckUsable();
            int id = _nextSequence++;
            var command = new GroupCommand.Prefill(id, [.. request.Context], [.. request.Query], plan, request.DecodeBudget,
                request.AllLogits, cancel.CanBeCanceled, (request.Options ?? Options).Timings);
            _cancelRequested = false;
            using var registration = cancel.Register(() => _cancelRequested = true);
            var logits = Run(command, everyRank: plan.Distributed);
            return new PrefillResult(id, logits!, plan);
        }
    }

    /// <summary>
    /// More prompt tokens for a sequence of full attention that was prefilled with the first chunk of its prompt (its
    /// DecodeBudget reserved room for the rest): the chunks of one long prompt can then alternate with decode steps of
    /// other sequences. Returns the last token's logits when <paramref name="logits"/> (the final chunk), else null.
    /// </summary>
    public float[]? Extend(int sequence, IReadOnlyList<int> tokens, bool logits)
    {
        lock (_lock)
        {
            CheckUsable();
            var seq = _ranks[0].Sequence(sequence);
            if (seq.Plan.Distributed) throw new InvalidOperationException($"sequence {sequence} is distributed: only full attention prefills in chunks");
            try { return Run(new GroupCommand.Extend(sequence, [.. tokens], logits), everyRank: false); }
            catch (ApbException) when (_failure is null)
            {
                Run(new GroupCommand.Release([sequence]), everyRank: false);
                throw;
            }
        }
    }

    /// <summary>One decode step for each sequence (its next token in <paramref name="tokens"/>): logits per sequence, in order.</summary>
    public float[][] Decode(IReadOnlyList<int> sequences, IReadOnlyList<int> tokens)
    {
        if (sequences.Count == 0) return [];
        var flat = Step(sequences, tokens, greedy: false);
        int vocab = flat.Length / sequences.Count;
        return Enumerable.Range(0, sequences.Count).Select(i => flat.AsSpan(i * vocab, vocab).ToArray()).ToArray();
    }

    /// <summary>
    /// One decode step for each sequence, answered with each one's greedy next token (the argmax of its logits, picked on
    /// the device: <see cref="Backends.IBackend.ArgMaxRows"/>) instead of the logits.
    /// </summary>
    public int[] DecodeGreedy(IReadOnlyList<int> sequences, IReadOnlyList<int> tokens)
    {
        if (sequences.Count == 0) return [];
        return Array.ConvertAll(Step(sequences, tokens, greedy: true), x => (int)x);
    }

    float[] Step(IReadOnlyList<int> sequences, IReadOnlyList<int> tokens, bool greedy)
    {
        if (sequences.Count != tokens.Count) throw new ArgumentException($"{sequences.Count} sequences but {tokens.Count} tokens");
        lock (_lock)
        {
            CheckUsable();
            var leader = _ranks[0];
            foreach (int s in sequences)
                if (!leader.Holds(s)) throw new InvalidOperationException($"sequence {s} is not in this group (never prefilled, released, or failed)");
            bool distributed = sequences.Any(s => leader.Sequence(s).Plan.Distributed);
            var command = new GroupCommand.Decode([.. sequences], [.. tokens], greedy);
            try { return Run(command, everyRank: distributed)!; }
            catch (ApbException) when (_failure is null)
            {
                // A step that failed part-way leaves these sequences' ranks at different lengths: none can go on.
                Run(new GroupCommand.Release([.. sequences]), everyRank: true);
                throw;
            }
        }
    }

    /// <summary>Frees the sequences' caches on every rank (a sequence already gone is ignored).</summary>
    public void Release(IReadOnlyList<int> sequences)
    {
        if (sequences.Count == 0) return;
        lock (_lock)
        {
            if (_disposed || _failure != null) return; // nothing to free where the ranks are gone or torn down
            var leader = _ranks[0];
            bool distributed = sequences.Any(s => leader.Holds(s) && leader.Sequence(s).Plan.Distributed);
            Run(new GroupCommand.Release([.. sequences]), everyRank: distributed);
        }
    }

    /// <summary>The sequence's plan and cache rows per local rank (for reports and tests).</summary>
    public (PrefillPlan Plan, int[] CachedRows) Describe(int sequence)
    {
        lock (_lock)
        {
            var plan = _ranks[0].Sequence(sequence).Plan;
            return (plan, _ranks.Select(r => r.Holds(sequence) ? r.Sequence(sequence).CachedRows : 0).ToArray());
        }
    }

    /// <summary>
    /// Every rank's profiles and memory for a sequence (one per rank of a distributed sequence, rank 0's alone for one
    /// of full attention), gathered over the communicator: under `apb launch` this is how rank 0 sees the others.
    /// </summary>
    public IReadOnlyList<RankReport> Reports(int sequence)
    {
        lock (_lock)
        {
            CheckUsable();
            var leader = _ranks[0];
            if (!leader.Holds(sequence)) throw new InvalidOperationException($"sequence {sequence} is not in this group");
            var flat = Run(new GroupCommand.Report(sequence), everyRank: leader.Sequence(sequence).Plan.Distributed)!;
            int k = RankReport.ValueCount;
            return Enumerable.Range(0, flat.Length / k).Select(r => RankReport.Read(r, flat.AsSpan(r * k, k))).ToArray();
        }
    }

    /// <summary>
    /// Every rank's memory and what it holds (all processes, asked of each rank, not assumed), rank 0 first;
    /// <paramref name="resetPeak"/> starts a new peak on each.
    /// </summary>
    public IReadOnlyList<RankMemoryUse> Memory(bool resetPeak = false)
    {
        lock (_lock)
        {
            CheckUsable();
            var flat = Run(new GroupCommand.Memory(resetPeak), everyRank: true)!;
            return Enumerable.Range(0, flat.Length / RankMemoryUse.ValueCount)
                .Select(r => RankMemoryUse.Read(flat.AsSpan(r * RankMemoryUse.ValueCount, RankMemoryUse.ValueCount))).ToArray();
        }
    }

    // ------------------------------------------------------------------------------------------------ follower

    /// <summary>
    /// Ranks 1.. of a process group: runs the leader's commands until it shuts the group down (returns) or fails
    /// (throws, after telling the leader why).
    /// </summary>
    public void Follow()
    {
        if (IsLeader) throw new InvalidOperationException("rank 0 leads the group; only the other ranks follow");
        var rank = _ranks[0];
        while (true)
        {
            var frame = _control!.Receive()
                ?? throw new ApbException($"rank {rank.Index}: rank 0 closed the control connection without shutting the group down (it failed or was killed: see its output)");
            var command = GroupCommand.Parse(frame);
            if (command is GroupCommand.Shutdown) return;
            try
            {
                rank.Execute(command, () => false);
            }
            catch (OperationCanceledException) { } // rank 0 broadcast the cancellation: every rank stopped at the same layer
            catch (Exception e)
            {
                string msg = $"rank {rank.Index} failed in {rank.Doing}: {Describe(e)}";
                _failure = msg;
                _control.ReportFailure(msg);
                rank.Comm.Abort(msg);
                throw new ApbException(msg, e);
            }
        }
    }

    // ------------------------------------------------------------------------------------------------ running

    /// <summary>
    /// Runs a command on the ranks that take part: every rank for a distributed sequence, rank 0 alone for a sequence of
    /// full attention. Returns rank 0's logits (null for commands without logits).
    /// </summary>
    float[]? Run(GroupCommand command, bool everyRank)
    {
        Func<bool> cancelled = () => _cancelRequested;
        if (_threads is not null)
        {
            if (!everyRank) return RunAlone(command, cancelled);
            try
            {
                return _threads.Run(r => _ranks[r].Execute(command, cancelled), r => _ranks[r].Doing)[0];
            }
            catch (Exception e) when (e is ApbException or OperationCanceledException)
            {
                RecoverThreads();
                throw;
            }
        }
        // A process group's leader: the followers get the command first, then rank 0 runs it.
        if (everyRank)
        {
            try { _control!.Send(GroupCommand.Encode(command)); }
            catch (ApbException e) { Fail(e.Message); throw new ApbException(_failure!, e); }
        }
        return RunAlone(command, cancelled);
    }

    /// <summary>Rank 0 on the calling thread: a full-attention sequence, or the leader's own part in a process group.</summary>
    float[]? RunAlone(GroupCommand command, Func<bool> cancelled)
    {
        var rank = _ranks[0];
        try
        {
            return rank.Execute(command, cancelled);
        }
        catch (OperationCanceledException) { throw; }
        catch (Exception e)
        {
            if (e is AggregateException { InnerExceptions.Count: 1 } agg) e = agg.InnerExceptions[0];
            string msg = $"rank {rank.Index} failed in {rank.Doing}: {Describe(e)}";
            // A process group's collectives may be half done on the other ranks: the group cannot go on.
            if (_control is not null) Fail(msg);
            throw new ApbException(_failure ?? msg, e);
        }
    }

    /// <summary>
    /// After a failed or cancelled run of threads: each rank freed the failed sequence when it unwound; the group's
    /// collective state is reset so the next request starts clean. A rank thread that never stopped makes that unsafe.
    /// </summary>
    void RecoverThreads()
    {
        if (_threads!.RunningRanks > 0)
        {
            _failure = $"{_threads.RunningRanks} rank thread(s) did not stop after a failure: the group is unusable";
            Failed?.Invoke(_failure);
            return;
        }
        _threads.Reset();
    }

    void FollowerLost(int rank, string why)
    {
        if (_failure != null || _disposed) return;
        Fail(why.StartsWith("rank ", StringComparison.Ordinal) ? why : $"rank {rank}: {why}");
    }

    void Fail(string why)
    {
        bool first = _failure is null;
        _failure ??= why;
        if (first) Failed?.Invoke(_failure);
        foreach (var r in _ranks) r.Comm.Abort(_failure);
        if (_control is { IsLeader: true }) _control.Abort();
    }

    void CheckUsable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_failure != null) throw new ApbException($"the rank group failed earlier and cannot serve: {_failure}");
        if (!IsLeader) throw new InvalidOperationException("only rank 0 submits requests; the other ranks follow");
    }

    static string Describe(Exception e) => e is ApbException ? e.Message : $"{e.GetType().Name}: {e.Message}";

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            if (_control is { IsLeader: true } && _failure is null)
            {
                _control.Close();
                try { _control.Send(GroupCommand.Encode(new GroupCommand.Shutdown())); }
                catch (ApbException) { }
            }
            _disposed = true;
            // After a failure a device may still run work that waits on an aborted transfer: its backend is left to the
            // process's exit rather than synchronized here, which could hang.
            foreach (var r in _ranks)
            {
                if (_failure is null) r.Dispose();
                else r.Comm.Dispose();
            }
            _control?.Dispose();
            _heads?.Dispose();
        }
    }
}
