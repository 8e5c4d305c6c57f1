using Apb.Backends;
using System.Diagnostics;
using System.Text;
using Apb.Engine;
using Apb.Runtime;
using Apb.Strategies;
using Apb.Tokenization;

namespace Apb.Serving;

/// <summary>Limits of the <see cref="BatchScheduler"/>.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Sequences decoded together in one step (vLLM's max_num_seqs).</summary>
    public int MaxBatch { get; init; } = 16;
    /// <summary>
    /// Prompt tokens of one full-attention prefill step (vLLM's max_num_batched_tokens): a longer prompt is prefilled in
    /// chunks of this many tokens, with a decode step of the running sequences between chunks.
    /// </summary>
    public int PrefillChunk { get; init; } = 8192;
    /// <summary>The most positions one request may take (--max-model-len); null: the model's, or less where memory says so.</summary>
    public int? MaxModelLength { get; init; }
    /// <summary>Share of a device's free memory (measured when the scheduler starts) that KV caches and activations may take.</summary>
    public double MemoryFraction { get; init; } = 0.9;

    public void Validate()
    {
        if (MaxBatch < 1) throw new ApbException($"--max-batch must be at least 1, got {MaxBatch}");
        if (PrefillChunk < 16) throw new ApbException($"--max-num-tokens must be at least 16, got {PrefillChunk}");
        if (!(MemoryFraction > 0 && MemoryFraction <= 1)) throw new ApbException($"memory fraction must be in (0, 1], got {MemoryFraction}");
    }
}

/// <summary>
/// Continuous batching on one <see cref="RankGroup"/>: one thread owns the group and loops. Each turn it drops what was
/// cancelled, admits waiting requests whose memory fits (prefill first, so a new request waits at most one decode step;
/// a long prompt of full attention goes in chunks with decode steps between them), then runs one decode step for every
/// running sequence together (one forward over the batch: the weights are read once per step for all of them).
/// Memory: on a device that tracks it, every request reserves the bytes of its KV cache on the busiest rank (prompt
/// plus its token budget, known before it starts) and of its prefill's activations until the prefill ends; what does not
/// fit now waits, what could never fit is refused when it arrives (<see cref="Check"/>), so no request runs out of
/// memory half-way. A client that goes away stops its request within one layer during prefill (the ranks agree where)
/// and within one step during decode; its memory returns at once.
/// </summary>
public sealed class BatchScheduler : IGenerationEngine
{
    readonly RankGroup _group;
    readonly HfTokenizer? _tokenizer;
    readonly IReadOnlySet<int> _stopTokens;
    readonly SchedulerOptions _o;
    readonly Thread _thread;
    readonly object _lock = new();
    readonly Queue<Active> _arrived = new();
    readonly List<Active> _waiting = [], _running = [];
    readonly long _budget;       // bytes per rank that caches and activations may take (0: not tracked)
    readonly int _elementBytes;
    long _reserved;              // bytes of the running requests on their busiest rank
    volatile bool _stopping;
    string? _failure;

    /// <param name="tokenizer">decodes the generated ids into text; null counts tokens only (benchmarks on random weights)</param>
    public BatchScheduler(RankGroup group, HfTokenizer? tokenizer, IReadOnlySet<int> stopTokens, SchedulerOptions options)
    {
        options.Validate();
        _group = group; _tokenizer = tokenizer; _stopTokens = stopTokens; _o = options;
        _elementBytes = group.LocalRanks[0].Backend.ActivationBytes;
        var memory = group.Memory().Select(m => m.Device).ToArray();
        _budget = memory.All(m => m.Tracked) ? (long)(memory.Min(m => m.AvailableBytes) * options.MemoryFraction) : 0;
        int fits = LongestThatFits(group.Config.MaxPositionEmbeddings);
        if (options.MaxModelLength is int asked && asked > fits)
            throw new ApbException(asked > group.Config.MaxPositionEmbeddings
                ? $"--max-model-len {asked} is more than the model's max_position_embeddings {group.Config.MaxPositionEmbeddings}"
                : $"--max-model-len {asked}: one request that long needs more KV cache than the {_budget / (double)(1L << 30):F1} GiB this device has for it; the most is {fits}");
        MaxModelLength = options.MaxModelLength ?? fits;
        // A rank that dies is known at once (the control channel), while this loop may sit in a collective until its
        // timeout: every request is answered with the reason then, not when the loop comes back.
        group.Failed += FailAll;
        _thread = new Thread(Loop) { IsBackground = true, Name = "apb scheduler" };
        _thread.Start();
    }

    /// <summary>The longest prompt plus completion one request may have: the model's positions, or less where memory says so.</summary>
    public int MaxModelLength { get; }
    /// <summary>KV-cache and activation bytes per rank the scheduler may use (0 where the backend does not track memory).</summary>
    public long BudgetBytes => _budget;
    public long ReservedBytes { get { lock (_lock) return _reserved; } }
    public int Running { get { lock (_lock) return _running.Count; } }
    public int Waiting { get { lock (_lock) return _waiting.Count + _arrived.Count; } }
    public long PromptTokens => Interlocked.Read(ref _promptTokens);
    public long GeneratedTokens => Interlocked.Read(ref _generatedTokens);
    public long DecodeSteps => Interlocked.Read(ref _steps);

    public EngineLoad Load => new(Running, Waiting, ReservedBytes, BudgetBytes, PromptTokens, GeneratedTokens, DecodeSteps, KvBytesPerRank())
        { Ranks = _ranks };

    /// <summary>
    /// KV-cache bytes of the rows the running sequences have cached now, per rank (computed from their plans and
    /// progress, so it holds for ranks in other processes too, and on backends that do not track memory).
    /// </summary>
    long[] KvBytesPerRank()
    {
        var bytes = new long[_group.WorldSize];
        long perRow = RowBytes;
        // Progress fields are written by the scheduler's thread between steps; a read that races one is a row off.
        foreach (var a in Snapshot(_running))
        {
            if (a.Sequence is null) continue;
            var rows = Rows(a.Plan, a.Job.Prompt, a.Prefilled, a.Fed);
            for (int r = 0; r < rows.Length; r++) bytes[r] += rows[r] * perRow;
        }
        return bytes;
    }

    // What the ranks hold, asked of them (a collective of a few numbers) on the scheduler's thread: once after the
    // engine goes idle with something changed, and at most once a second while it works. /metrics shows it, so a
    // request that left KV cache behind on any rank shows up there.
    static readonly TimeSpan RanksEvery = TimeSpan.FromSeconds(1);
    volatile IReadOnlyList<RankMemoryUse>? _ranks;
    volatile bool _ranksStale = true;
    long _ranksAt;

    void AskRanks()
    {
        _ranksStale = false;
        _ranksAt = Stopwatch.GetTimestamp();
        _ranks = _group.Memory();
    }

    Task<CompletionResult> IGenerationEngine.RunAsync(CompletionJob job, Action<string>? onText, CancellationToken cancel) =>
        RunAsync(job, onText, cancel);

    /// <summary>After each decode step, on the scheduler's thread: the batch size and how long the step took.</summary>
    public event Action<int, TimeSpan>? Stepped;
    long _promptTokens, _generatedTokens, _steps;

    /// <summary>
    /// Refuses, before it waits in line, a request that could never run: longer than <see cref="MaxModelLength"/>, or a
    /// shape the strategy cannot run (too short for the ranks, a query longer than the anchor...).
    /// </summary>
    public void Check(PromptTokens prompt, int maxNewTokens)
    {
        long total = (long)prompt.Count + maxNewTokens;
        if (total > MaxModelLength)
            throw new InvalidRequestException(
                $"the prompt ({prompt.Count} tokens) and max_tokens ({maxNewTokens}) need {total} positions, more than this server's " +
                $"limit of {MaxModelLength} (--max-model-len{(_budget > 0 ? ", from the KV cache that fits in device memory" : "")}); " +
                "shorten the prompt or lower max_tokens", "max_tokens", "context_length_exceeded");
        var plan = Plan(prompt);
        long need = Bytes(plan, prompt, maxNewTokens);
        if (_budget > 0 && need > _budget)
            throw new InvalidRequestException(
                $"this request needs {need / (double)(1L << 30):F1} GiB of KV cache and activations on a rank, more than the " +
                $"{_budget / (double)(1L << 30):F1} GiB this server has for them; shorten the prompt or lower max_tokens",
                "messages", "context_length_exceeded");
    }

    PrefillPlan Plan(PromptTokens p)
    {
        try { return _group.Plan(p.Context.Count, p.Query.Count, p.AnchorInsertAt); }
        catch (ApbException e) { throw new InvalidRequestException(e.Message, "messages", "invalid_request_error"); }
    }

    /// <summary>Runs a completion: admitted when memory allows, batched with the others, streamed through <paramref name="onText"/>.</summary>
    /// <param name="onFirstToken">called on the scheduler's thread when the prefill's token is out (the request decodes from then on)</param>
    public Task<CompletionResult> RunAsync(CompletionJob job, Action<string>? onText, CancellationToken cancel, Action? onFirstToken = null)
    {
        Check(job.Prompt, job.Sampling.MaxNewTokens);
        if (_tokenizer is null && job.StopSequences.Count > 0) throw new InvalidRequestException("stop sequences need a tokenizer", "stop");
        var a = new Active(job, onText, cancel, Plan(job.Prompt)) { OnFirstToken = onFirstToken };
        a.Bytes = Bytes(a.Plan, job.Prompt, job.Sampling.MaxNewTokens);
        a.Workspace = WorkspaceBytes(a.Plan, job.Prompt);
        lock (_lock)
        {
            if (_failure != null) throw new ServiceUnavailableException($"the server's ranks failed and cannot serve: {_failure}");
            if (_stopping) throw new ObjectDisposedException(nameof(BatchScheduler));
            _arrived.Enqueue(a);
            Monitor.Pulse(_lock);
        }
        // Wake the loop when the client goes away, so a waiting or running request is dropped at once.
        a.Registration = cancel.Register(() => { lock (_lock) Monitor.Pulse(_lock); });
        return a.Done.Task;
    }

    /// <summary>One request in the scheduler: its state from arrival to the end.</summary>
    sealed class Active(CompletionJob job, Action<string>? onText, CancellationToken cancel, PrefillPlan plan)
    {
        public readonly CompletionJob Job = job;
        public readonly Action<string>? OnText = onText;
        public readonly CancellationToken Cancel = cancel;
        public readonly PrefillPlan Plan = plan;
        public readonly TaskCompletionSource<CompletionResult> Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public CancellationTokenRegistration Registration;
        public Action? OnFirstToken;
        public long Bytes, Workspace;
        public int? Sequence;
        public int Prefilled;            // prompt tokens in the cache (chunked prefill)
        public int Pending = -1;         // the token the next decode step feeds
        public int Generated;
        public int Fed;                  // decode steps run: tokens appended to the cache after the prompt
        public Sampler? Sampler;
        public List<TokenLogprob>? Logprobs;   // only when the job asks for logprobs
        public StreamingDecoder? Decoder;
        public StopSequenceFilter? Filter;
        public readonly StringBuilder Text = new();
        public long AdmittedAt, PrefillStart, FirstTokenAt;
        public TimeSpan DecodeTime;
        public IReadOnlyList<Diagnostics.Profile>? PrefillProfiles;
    }

    // ------------------------------------------------------------------------------------------------ the loop

    void Loop()
    {
        while (true)
        {
            bool idle;
            lock (_lock)
            {
                while (_arrived.Count > 0) _waiting.Add(_arrived.Dequeue());
                if (_stopping) break;
                idle = _waiting.Count == 0 && _running.Count == 0;
                if (idle && !_ranksStale) { Monitor.Wait(_lock); continue; }
            }
            try
            {
                if (idle || Stopwatch.GetElapsedTime(_ranksAt) > RanksEvery) AskRanks();
                if (idle) continue;
                DropCancelled();
                Admit();
                DecodeStep();
            }
            catch (Exception e) when (_group.Failure is not null)
            {
                // The ranks are gone (a dead process, a communicator error): every request ends with the reason.
                FailAll(_group.Failure ?? e.Message);
                return;
            }
        }
        FailAll("the server is shutting down");
    }

    void DropCancelled()
    {
        foreach (var a in Snapshot(_waiting).Where(a => a.Cancel.IsCancellationRequested)) Finish(a, cancelled: true);
        foreach (var a in Snapshot(_running).Where(a => a.Cancel.IsCancellationRequested)) Finish(a, cancelled: true);
    }

    List<Active> Snapshot(List<Active> list) { lock (_lock) return [.. list]; }

    /// <summary>
    /// Starts waiting requests in arrival order while the batch and memory allow: one prefill (or one chunk of a long
    /// one) per turn, so running sequences get a decode step between prefills.
    /// </summary>
    void Admit()
    {
        Active? next;
        lock (_lock)
        {
            // A request being prefilled in chunks goes on first; else the oldest waiting one, when it fits.
            next = _running.FirstOrDefault(a => a.Sequence is not null && a.Prefilled < a.Job.Prompt.Count);
            if (next is null && _waiting.Count > 0 && _running.Count < _o.MaxBatch)
            {
                var w = _waiting[0];
                if (_budget == 0 || _reserved + w.Bytes + w.Workspace <= _budget || _running.Count == 0)
                {
                    _waiting.RemoveAt(0);
                    _running.Add(w);
                    _reserved += w.Bytes;
                    w.AdmittedAt = Stopwatch.GetTimestamp();
                    next = w;
                }
            }
        }
        if (next is null) return;
        try { Prefill(next); }
        catch (OperationCanceledException) { Finish(next, cancelled: true); }
        catch (ApbException e) when (_group.Failure is null) { Finish(next, error: e); }
    }

    void Prefill(Active a)
    {
        var p = a.Job.Prompt;
        if (a.Sequence is null)
        {
            a.PrefillStart = Stopwatch.GetTimestamp();
            a.Sampler = new Sampler(a.Job.Sampling);
            a.Decoder = _tokenizer is null ? null : new StreamingDecoder(_tokenizer);
            a.Filter = new StopSequenceFilter(a.Job.StopSequences);
            int max = a.Job.Sampling.MaxNewTokens;
            // Full attention in chunks: the first chunk creates the sequence with room for the rest of the prompt.
            if (!a.Plan.Distributed && p.Count > _o.PrefillChunk)
            {
                var all = p.All;
                var first = all.Take(_o.PrefillChunk).ToArray();
                var r = _group.Prefill(new PrefillRequest(first, [], p.AnchorInsertAt, p.Count - first.Length + max), a.Cancel);
                a.Sequence = r.Sequence;
                a.Prefilled = first.Length;
                return;
            }
            var options = a.Job.Timings ? _group.Options with { Timings = true } : null;
            var done = _group.Prefill(new PrefillRequest(p.Context, p.Query, p.AnchorInsertAt, max, Options: options), a.Cancel);
            a.Sequence = done.Sequence;
            a.Prefilled = p.Count;
            // Read while the sequence lives: the ranks drop its profiles with its caches.
            if (a.Job.Timings) a.PrefillProfiles = _group.Reports(done.Sequence).Select(r => r.Prefill!).ToArray();
            Prefilled(a, done.Logits);
            return;
        }
        a.Cancel.ThrowIfCancellationRequested();
        var tokens = p.All.Skip(a.Prefilled).Take(_o.PrefillChunk).ToArray();
        bool last = a.Prefilled + tokens.Length == p.Count;
        var logits = _group.Extend(a.Sequence.Value, tokens, last);
        a.Prefilled += tokens.Length;
        if (last) Prefilled(a, logits!);
    }

    void Prefilled(Active a, float[] logits)
    {
        a.FirstTokenAt = Stopwatch.GetTimestamp();
        Interlocked.Add(ref _promptTokens, a.Job.Prompt.Count);
        a.OnFirstToken?.Invoke();
        Next(a, logits);
    }

    /// <summary>One step for every running sequence that has a token to feed.</summary>
    void DecodeStep()
    {
        var batch = Snapshot(_running).Where(a => a.Pending >= 0 && !a.Cancel.IsCancellationRequested).ToList();
        if (batch.Count == 0) return;
        long start = Stopwatch.GetTimestamp();
        // When every request takes the plain argmax and no logprobs, the ranks answer with token ids picked on the device.
        bool greedy = batch.All(a => a.Job.Sampling.TokenOnly);
        float[][]? logits = null;
        int[]? picked = null;
        var sequences = batch.Select(a => a.Sequence!.Value).ToArray();
        var fed = batch.Select(a => a.Pending).ToArray();
        try
        {
            if (greedy) picked = _group.DecodeGreedy(sequences, fed);
            else logits = _group.Decode(sequences, fed);
        }
        catch (ApbException e) when (_group.Failure is null)
        {
            // The step failed for the whole batch (its sequences were released by the group): each request says why.
            foreach (var a in batch) { a.Sequence = null; Finish(a, error: e); }
            return;
        }
        var took = Stopwatch.GetElapsedTime(start);
        Interlocked.Increment(ref _steps);
        foreach (var a in batch) a.Fed++;
        Stepped?.Invoke(batch.Count, took);
        for (int i = 0; i < batch.Count; i++)
        {
            batch[i].DecodeTime += took;
            // A request's own sampling can fail (a logit bias past the model's vocabulary): it ends alone, the loop goes on.
            try { Next(batch[i], logits?[i], picked?[i] ?? -1); }
            catch (ApbException e) { Finish(batch[i], error: e); }
        }
    }

    /// <summary>
    /// Samples the next token from <paramref name="logits"/> (or takes <paramref name="greedyToken"/>, the device's
    /// argmax, when the step returned no logits), streams its text, and decides whether the request ends.
    /// </summary>
    void Next(Active a, float[]? logits, int greedyToken = -1)
    {
        a.Pending = -1;
        if (a.Generated >= a.Job.Sampling.MaxNewTokens) { Finish(a, reason: "length"); return; }
        int token = logits is null ? greedyToken : a.Sampler!.Next(logits);
        if (_stopTokens.Contains(token)) { Finish(a, reason: "stop"); return; }
        if (a.Job.Sampling.Logprobs is int top) (a.Logprobs ??= []).Add(Sampler.Logprob(logits!, token, top));
        a.Generated++;
        Interlocked.Increment(ref _generatedTokens);
        if (a.Decoder != null) Emit(a, a.Filter!.Push(a.Decoder.Push(token)));
        if (a.Filter!.Stopped) { Finish(a, reason: "stop"); return; }
        if (a.Generated >= a.Job.Sampling.MaxNewTokens) { Finish(a, reason: "length"); return; }
        a.Pending = token;
    }

    static void Emit(Active a, string piece)
    {
        if (piece.Length == 0) return;
        a.Text.Append(piece);
        a.OnText?.Invoke(piece);
    }

    /// <summary>Ends a request: its sequence released (memory back at once), its task completed.</summary>
    void Finish(Active a, string? reason = null, bool cancelled = false, Exception? error = null)
    {
        _ranksStale = true;
        lock (_lock)
        {
            if (!_running.Remove(a)) _waiting.Remove(a);
            else _reserved -= a.Bytes;
        }
        if (a.Sequence is int s && _group.Failure is null)
        {
            try { _group.Release([s]); } catch (ApbException) { }
        }
        a.Sequence = null;
        a.Registration.Dispose();
        if (cancelled) { a.Done.TrySetCanceled(a.Cancel.IsCancellationRequested ? a.Cancel : CancellationToken.None); return; }
        if (error != null) { a.Done.TrySetException(error); return; }
        if (a.Decoder != null && !a.Filter!.Stopped) Emit(a, a.Filter.Push(a.Decoder.Flush()));
        Emit(a, a.Filter!.Flush());
        var queued = Stopwatch.GetElapsedTime(a.Job.ArrivedAt, a.AdmittedAt);
        var prefill = Stopwatch.GetElapsedTime(a.PrefillStart, a.FirstTokenAt);
        var ttft = Stopwatch.GetElapsedTime(a.Job.ArrivedAt, a.FirstTokenAt);
        a.Done.TrySetResult(new CompletionResult(a.Text.ToString(), reason!, a.Job.Prompt.Count, a.Generated, queued, prefill,
            a.DecodeTime, ttft) { Strategy = a.Plan.ToString(), PrefillProfiles = a.PrefillProfiles, Logprobs = a.Logprobs });
    }

    void FailAll(string why)
    {
        List<Active> all;
        lock (_lock)
        {
            _failure ??= why;
            while (_arrived.Count > 0) _waiting.Add(_arrived.Dequeue());
            all = [.. _running, .. _waiting];
            _running.Clear(); _waiting.Clear(); _reserved = 0;
        }
        foreach (var a in all)
        {
            a.Registration.Dispose();
            a.Done.TrySetException(new ServiceUnavailableException($"the server's ranks failed and cannot serve: {why}"));
        }
    }

    // ------------------------------------------------------------------------------------------------ memory

    /// <summary>KV bytes of a request on its busiest rank: its rows there (the whole prompt and its token budget).</summary>
    long Bytes(PrefillPlan plan, PromptTokens p, int maxNew) => _budget == 0 ? 0 : Rows(plan, p, p.Count, maxNew).Max() * RowBytes;

    /// <summary>A cached row: K and V for every layer.</summary>
    long RowBytes => (long)_group.Config.NumHiddenLayers * 2 * _group.LocalRanks[0].Backend.KvBytes(1, _group.Config.KvDim, _group.Options.KvCache);

    /// <summary>
    /// A sequence's cache rows per rank of the group, once <paramref name="prefilled"/> prompt tokens and
    /// <paramref name="decoded"/> more are in: full attention keeps every row on rank 0; a distributed plan keeps each
    /// rank's context rows there and the query (the prompt past the plan's context: a prompt with no query lends it its
    /// last token) and the generated tokens on the last rank.
    /// </summary>
    long[] Rows(PrefillPlan plan, PromptTokens p, int prefilled, int decoded)
    {
        var rows = new long[_group.WorldSize];
        if (plan.Plan is not { } sp) rows[0] = (long)prefilled + decoded;
        else
            for (int r = 0; r < sp.Ranks; r++)
                rows[r] = sp.RealRows(r) + (r == sp.Ranks - 1 ? (long)p.Count - sp.ContextLength + decoded : 0);
        return rows;
    }

    /// <summary>
    /// Activations of the request's prefill on a rank, while it runs: the model's per-token workspace for its local
    /// rows (or one chunk) and the attention's key-side buffers (received blocks, passing blocks, merges), generously.
    /// </summary>
    long WorkspaceBytes(PrefillPlan plan, PromptTokens p)
    {
        if (_budget == 0) return 0;
        var c = _group.Config;
        long rows = plan.Plan is { } sp ? sp.LocalRows(sp.Ranks - 1) : Math.Min(p.Count, _o.PrefillChunk);
        long keys = plan.Plan is { } s2 ? s2.LocalRows(s2.Ranks - 1) + (long)s2.MostPassingRows + 2L * s2.BlockLength : rows;
        long perRow = 3L * c.HiddenSize + 2L * c.QDim + 2L * c.KvDim + 2L * c.IntermediateSize;
        return (rows * perRow + 3 * keys * (c.QDim + 2L * c.KvDim) + (long)p.Query.Count * c.VocabSize) * _elementBytes;
    }

    int LongestThatFits(int positions)
    {
        if (_budget == 0) return positions;
        // One request alone on a device of full attention: its cache, plus one prefill chunk's activations.
        var c = _group.Config;
        long chunk = (3L * c.HiddenSize + 2L * c.QDim + 2L * c.KvDim + 2L * c.IntermediateSize) * _o.PrefillChunk * _elementBytes;
        // An fp8 cache is read as bf16 values for a prefill (the backend's scratch, one layer's K and V at a time), so
        // its longest prompt also pays for that scratch per row.
        long scratch = _group.Options.KvCache == KvCacheDType.Auto ? 0 : 2L * c.KvDim * _elementBytes;
        long fits = (_budget - chunk) / Math.Max(RowBytes + scratch, 1);
        return (int)Math.Clamp(fits, 1, positions);
    }

    public void Dispose()
    {
        _group.Failed -= FailAll;
        lock (_lock)
        {
            _stopping = true;
            Monitor.Pulse(_lock);
        }
        _thread.Join(TimeSpan.FromSeconds(30));
    }
}

/// <summary>The server cannot serve anything now (its ranks failed): HTTP 503, the client may retry elsewhere.</summary>
public sealed class ServiceUnavailableException(string message) : ApbException(message);
