using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Apb.Backends;
using Apb.Bench.Timing;
using Apb.Engine;
using Apb.Runtime;
using Apb.Serving;
using Apb.Strategies;

namespace Apb.Bench.Serve;

/// <summary>What `apb bench serve` was asked to run.</summary>
public sealed record ServeSettings
{
    /// <summary>A running server's base URL (http://host:port); null: the engine in this process on --shape/--model.</summary>
    public string? Url { get; init; }
    public string? Shape { get; init; }
    public string? Model { get; init; }
    public required string Device { get; init; }
    public required Func<IBackend> NewBackend { get; init; }
    public StrategyKind Strategy { get; init; } = StrategyKind.Full;
    public int Ranks { get; init; } = 1;
    /// <summary>load (a stream of requests), batch (one alone, then Batch together) or ttft (a long prompt alone, then during Background decodes).</summary>
    public string Experiment { get; init; } = "load";
    public int Requests { get; init; } = 32;
    /// <summary>Requests in flight at once (closed loop); with <see cref="Rate"/>, the cap on the open loop.</summary>
    public int Concurrency { get; init; } = 8;
    /// <summary>Requests per second arriving as a Poisson process (open loop); 0: closed loop at <see cref="Concurrency"/>.</summary>
    public double Rate { get; init; }
    public int[] PromptLengths { get; init; } = [1024];
    public int OutputTokens { get; init; } = 64;
    /// <summary>batch: how many decode together; ttft: how many decode in the background.</summary>
    public int Batch { get; init; } = 16;
    /// <summary>ttft: the background requests' prompt length.</summary>
    public int BackgroundLength { get; init; } = 8192;
    public int MaxBatch { get; init; } = 16;
    public int PrefillChunk { get; init; } = 8192;
    public int Repeats { get; init; } = 3;
    public ulong Seed { get; init; } = 1;
    public required string Out { get; init; }
    public required string CommandLine { get; init; }
}

/// <summary>Where the requests of a serving benchmark go: a server over HTTP, or the engine in this process.</summary>
interface ITarget : IDisposable
{
    /// <summary>One request of <paramref name="promptTokens"/> prompt tokens for <paramref name="maxTokens"/> tokens.</summary>
    Task<RequestTiming> Send(int promptTokens, int maxTokens, int index, CancellationToken cancel);
}

/// <summary>One request's account: when its first token came, when it ended, how many tokens it got.</summary>
public sealed record RequestTiming(int PromptTokens, int OutputTokens, double TtftSeconds, double TotalSeconds, string? Error)
{
    /// <summary>Time per output token after the first.</summary>
    public double TpotSeconds => OutputTokens > 1 ? (TotalSeconds - TtftSeconds) / (OutputTokens - 1) : double.NaN;
}

/// <summary>
/// Serving benchmark, shaped like vLLM's: requests of a prompt-length mix sent at a rate or a concurrency, each timed from
/// its sending to its first token (TTFT) and to its end (time per output token after the first), with throughput and
/// errors; JSON and markdown to --out. Against a running server over its OpenAI API (--url), or the engine itself in
/// this process (--shape/--model: random token ids, no text; the same scheduler the server runs). Two experiments
/// answer the serving bars directly: `batch` (decode tokens/s of one request alone against Batch together, from the
/// scheduler's step times) and `ttft` (a long prompt's time to first token alone against during Background decodes).
/// </summary>
public sealed class ServeBench
{
    readonly ServeSettings _o;
    readonly TextWriter _out, _log;
    readonly Stopwatch _clock = Stopwatch.StartNew();
    readonly Dictionary<string, object> _results = new();

    public ServeBench(ServeSettings settings, TextWriter output, TextWriter log)
    {
        _o = settings; _out = output; _log = log;
        if (_o.Experiment is not ("load" or "batch" or "ttft")) throw new ApbException($"--experiment {_o.Experiment}: expected load, batch or ttft");
        if (_o.Url != null && _o.Experiment != "load") throw new ApbException($"--experiment {_o.Experiment} measures the engine's steps: run it without --url");
        if (_o.Requests < 1 || _o.Concurrency < 1 || _o.OutputTokens < 1 || _o.Batch < 1) throw new ApbException("--requests, --concurrency, --output-tokens and --batch must be at least 1");
        if (_o.Rate < 0 || double.IsNaN(_o.Rate)) throw new ApbException($"--rate must be >= 0 (0: closed loop), got {_o.Rate}");
    }

    void Log(string line) { _log.WriteLine($"[bench serve {_clock.Elapsed.TotalSeconds,6:F1}s] {line}"); _log.Flush(); }

    public int Run()
    {
        if (_o.Url != null)
        {
            using var http = new HttpTarget(_o.Url, _o.Model);
            Load(http);
        }
        else
        {
            using var engine = EngineTarget.Open(_o, Log);
            switch (_o.Experiment)
            {
                case "batch": Batch(engine); break;
                case "ttft": Ttft(engine); break;
                default: Load(engine); break;
            }
        }
        Write();
        return 0;
    }

    // ------------------------------------------------------------------------------------------------ experiments

    /// <summary>A stream of requests: the prompt lengths in turn, closed loop at --concurrency or open loop at --rate.</summary>
    void Load(ITarget target)
    {
        var rng = new Random(unchecked((int)_o.Seed));
        var timings = new RequestTiming[_o.Requests];
        using var slots = new SemaphoreSlim(_o.Concurrency);
        var tasks = new List<Task>();
        var start = Stopwatch.GetTimestamp();
        double next = 0;
        for (int i = 0; i < _o.Requests; i++)
        {
            int index = i, length = _o.PromptLengths[i % _o.PromptLengths.Length];
            if (_o.Rate > 0)
            {
                next += -Math.Log(1 - rng.NextDouble()) / _o.Rate; // exponential gaps: Poisson arrivals
                var wait = TimeSpan.FromSeconds(next) - Stopwatch.GetElapsedTime(start);
                if (wait > TimeSpan.Zero) Thread.Sleep(wait);
            }
            slots.Wait();
            tasks.Add(Task.Run(async () =>
            {
                try { timings[index] = await target.Send(length, _o.OutputTokens, index, CancellationToken.None); }
                finally { slots.Release(); }
            }));
        }
        Task.WaitAll(tasks);
        double wall = Stopwatch.GetElapsedTime(start).TotalSeconds;
        var ok = timings.Where(t => t.Error is null).ToArray();
        var summary = new Dictionary<string, object>
        {
            ["requests"] = _o.Requests, ["errors"] = timings.Length - ok.Length, ["wall_seconds"] = wall,
            ["request_throughput"] = ok.Length / wall, ["output_throughput"] = ok.Sum(t => t.OutputTokens) / wall,
            ["ttft_p50"] = Percentile(ok.Select(t => t.TtftSeconds), 50), ["ttft_p99"] = Percentile(ok.Select(t => t.TtftSeconds), 99),
            ["tpot_p50"] = Percentile(ok.Select(t => t.TpotSeconds), 50), ["tpot_p99"] = Percentile(ok.Select(t => t.TpotSeconds), 99),
        };
        _results["load"] = summary;
        _results["requests_detail"] = timings;
        foreach (var e in timings.Where(t => t.Error != null).Take(3)) Log($"error: {e.Error}");
        Log($"{ok.Length}/{_o.Requests} ok in {wall:F2} s; TTFT p50 {summary["ttft_p50"]:F3} s p99 {summary["ttft_p99"]:F3} s; " +
            $"TPOT p50 {1000 * (double)summary["tpot_p50"]:F2} ms; {summary["output_throughput"]:F1} output tok/s");
    }

    /// <summary>Decode tokens/s of one request alone and of Batch together, each from the median step time at that batch.</summary>
    void Batch(EngineTarget engine)
    {
        int length = _o.PromptLengths[0];
        engine.Send(length, 4, 999, CancellationToken.None).Wait(); // warm-up
        var rows = new List<Dictionary<string, object>>();
        double? alone = null;
        foreach (int b in new[] { 1, _o.Batch }.Distinct())
        {
            var steps = new List<double>();
            void Record(int batch, TimeSpan t) { if (batch == b) lock (steps) steps.Add(t.TotalMilliseconds); }
            engine.Scheduler.Stepped += Record;
            try { Task.WaitAll(Enumerable.Range(0, b).Select(i => engine.Send(length, _o.OutputTokens, i, CancellationToken.None)).ToArray()); }
            finally { engine.Scheduler.Stepped -= Record; }
            double ms = Stats.Median(steps), tps = b / (ms / 1000);
            alone ??= tps;
            rows.Add(new() { ["batch"] = b, ["context"] = length, ["steps"] = steps.Count, ["step_ms_median"] = ms, ["tokens_per_second"] = tps, ["vs_alone"] = tps / alone.Value });
            Log($"batch {b} x {length} tokens: step {ms:F2} ms median of {steps.Count}, {tps:F1} tok/s ({tps / alone.Value:F2}x alone)");
        }
        _results["batch"] = rows;
    }

    /// <summary>A long prompt's TTFT alone, then while Background requests decode (median of Repeats each).</summary>
    void Ttft(EngineTarget engine)
    {
        int probe = _o.PromptLengths[0];
        engine.Send(probe, 1, 999, CancellationToken.None).Wait(); // warm-up: kernels compiled, workspaces sized
        var alone = new List<double>();
        for (int i = 0; i < _o.Repeats; i++) alone.Add(engine.Send(probe, 1, 1000 + i, CancellationToken.None).Result.TtftSeconds);
        var loaded = new List<double>();
        double worstGapMs = 0;
        for (int rep = 0; rep < _o.Repeats; rep++)
        {
            using var stop = new CancellationTokenSource();
            using var decoding = new CountdownEvent(_o.Batch);
            // Long enough to decode through the probe's prefill; cancelled once it is measured.
            int backgroundTokens = Math.Max(_o.OutputTokens, 4096);
            var background = Enumerable.Range(0, _o.Batch).Select(i =>
                engine.Send(_o.BackgroundLength, backgroundTokens, 2000 + i, stop.Token, () => decoding.Signal())).ToArray();
            // Every background request decoding, or one of them failed (refused, out of memory): then say why.
            while (!decoding.Wait(TimeSpan.FromMilliseconds(200)))
                if (background.FirstOrDefault(t => t.IsFaulted || (t.IsCompleted && t.Result.Error != null)) is { } bad)
                {
                    stop.Cancel();
                    throw new ApbException($"a background request failed before decoding: {bad.Exception?.InnerException?.Message ?? bad.Result.Error}");
                }
            // The background's decode steps stop while the probe is prefilled: the gap that spans the prefill is closed
            // by the first step after it, so the handler stays until that step.
            long last = Stopwatch.GetTimestamp();
            double gap = 0;
            bool probeDone = false;
            using var afterProbe = new ManualResetEventSlim();
            void Step(int batch, TimeSpan t)
            {
                long now = Stopwatch.GetTimestamp();
                gap = Math.Max(gap, Stopwatch.GetElapsedTime(last, now).TotalMilliseconds);
                last = now;
                if (Volatile.Read(ref probeDone)) afterProbe.Set();
            }
            engine.Scheduler.Stepped += Step;
            var r = engine.Send(probe, 1, 3000 + rep, CancellationToken.None).Result;
            Volatile.Write(ref probeDone, true);
            afterProbe.Wait(TimeSpan.FromSeconds(60));
            engine.Scheduler.Stepped -= Step;
            loaded.Add(r.TtftSeconds);
            worstGapMs = Math.Max(worstGapMs, gap);
            stop.Cancel();
            foreach (var t in background) try { t.Wait(); } catch (AggregateException e) { Log($"background: {e.InnerException?.Message}"); }
        }
        double a = Stats.Median(alone), l = Stats.Median(loaded);
        _results["ttft"] = new Dictionary<string, object>
        {
            ["prompt"] = probe, ["background"] = _o.Batch, ["background_context"] = _o.BackgroundLength,
            ["alone_seconds"] = alone, ["loaded_seconds"] = loaded, ["alone_median"] = a, ["loaded_median"] = l, ["ratio"] = l / a,
            ["longest_decode_gap_ms"] = worstGapMs,
        };
        Log($"TTFT of {probe} tokens: {a:F3} s alone, {l:F3} s during {_o.Batch} decodes ({l / a:F2}x); longest gap between their decode steps {worstGapMs:F0} ms");
    }

    static double Percentile(IEnumerable<double> xs, double p)
    {
        var a = xs.Where(double.IsFinite).Order().ToArray();
        if (a.Length == 0) return double.NaN;
        double rank = p / 100 * (a.Length - 1);
        int lo = (int)Math.Floor(rank), hi = (int)Math.Ceiling(rank);
        return a[lo] + (a[hi] - a[lo]) * (rank - lo);
    }

    void Write()
    {
        Directory.CreateDirectory(_o.Out);
        string path = Path.Combine(_o.Out, "serve.json");
        using (var fs = File.Create(path))
        using (var w = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("command", _o.CommandLine);
            w.WriteString("target", _o.Url ?? $"{_o.Shape ?? _o.Model ?? "llama-3.1-8b"} on {_o.Device}, {_o.Strategy.ToString().ToLowerInvariant()} x{_o.Ranks}");
            w.WriteString("experiment", _o.Experiment);
            foreach (var (k, v) in _results) { w.WritePropertyName(k); WriteValue(w, v); }
            w.WriteEndObject();
        }
        var md = Markdown();
        File.WriteAllText(Path.Combine(_o.Out, "serve.md"), md);
        _out.Write(md);
        _out.WriteLine($"wrote {path} and serve.md");
    }

    static void WriteValue(Utf8JsonWriter w, object? v)
    {
        switch (v)
        {
            case null: w.WriteNullValue(); break;
            case double d: if (double.IsFinite(d)) w.WriteNumberValue(d); else w.WriteNullValue(); break;
            case int i: w.WriteNumberValue(i); break;
            case long l: w.WriteNumberValue(l); break;
            case string s: w.WriteStringValue(s); break;
            case RequestTiming t:
                w.WriteStartObject();
                w.WriteNumber("prompt_tokens", t.PromptTokens); w.WriteNumber("output_tokens", t.OutputTokens);
                WriteNum(w, "ttft", t.TtftSeconds); WriteNum(w, "total", t.TotalSeconds); WriteNum(w, "tpot", t.TpotSeconds);
                if (t.Error != null) w.WriteString("error", t.Error);
                w.WriteEndObject();
                break;
            case System.Collections.IDictionary d:
                w.WriteStartObject();
                foreach (System.Collections.DictionaryEntry e in d) { w.WritePropertyName((string)e.Key); WriteValue(w, e.Value); }
                w.WriteEndObject();
                break;
            case System.Collections.IEnumerable e:
                w.WriteStartArray();
                foreach (var x in e) WriteValue(w, x);
                w.WriteEndArray();
                break;
            default: w.WriteStringValue(v.ToString()); break;
        }
    }

    static void WriteNum(Utf8JsonWriter w, string name, double x)
    {
        if (double.IsFinite(x)) w.WriteNumber(name, x); else w.WriteNull(name);
    }

    string Markdown()
    {
        var s = new StringBuilder();
        s.AppendLine($"`{Bench.Markdown.Cell(_o.CommandLine)}`").AppendLine();
        if (_results.TryGetValue("load", out var lo) && lo is Dictionary<string, object> l)
        {
            s.AppendLine("| requests | errors | wall s | req/s | output tok/s | TTFT p50 s | TTFT p99 s | TPOT p50 ms | TPOT p99 ms |");
            s.AppendLine("|---|---|---|---|---|---|---|---|---|");
            double D(string k) => (double)l[k];
            s.AppendLine($"| {l["requests"]} | {l["errors"]} | {Bench.Markdown.F(D("wall_seconds"), "F2")} | {Bench.Markdown.F(D("request_throughput"), "F2")} | " +
                $"{Bench.Markdown.F(D("output_throughput"), "F1")} | {Bench.Markdown.F(D("ttft_p50"))} | {Bench.Markdown.F(D("ttft_p99"))} | " +
                $"{Bench.Markdown.F(1000 * D("tpot_p50"), "F2")} | {Bench.Markdown.F(1000 * D("tpot_p99"), "F2")} |");
        }
        if (_results.TryGetValue("batch", out var bo) && bo is List<Dictionary<string, object>> rows)
        {
            s.AppendLine("| batch | context | step ms (median) | decode tok/s | vs alone |");
            s.AppendLine("|---|---|---|---|---|");
            foreach (var r in rows)
                s.AppendLine($"| {r["batch"]} | {r["context"]} | {Bench.Markdown.F((double)r["step_ms_median"], "F2")} | " +
                    $"{Bench.Markdown.F((double)r["tokens_per_second"], "F1")} | {Bench.Markdown.F((double)r["vs_alone"], "F2")} |");
        }
        if (_results.TryGetValue("ttft", out var to) && to is Dictionary<string, object> t)
        {
            s.AppendLine("| prompt | background | TTFT alone s | TTFT during decodes s | ratio | longest decode gap ms |");
            s.AppendLine("|---|---|---|---|---|---|");
            s.AppendLine($"| {t["prompt"]} | {t["background"]} x {t["background_context"]} | {Bench.Markdown.F((double)t["alone_median"])} | " +
                $"{Bench.Markdown.F((double)t["loaded_median"])} | {Bench.Markdown.F((double)t["ratio"], "F2")} | {Bench.Markdown.F((double)t["longest_decode_gap_ms"], "F0")} |");
        }
        return s.ToString();
    }

    // ------------------------------------------------------------------------------------------------ targets

    /// <summary>The engine in this process: a rank group and the scheduler the server runs, on random token ids.</summary>
    sealed class EngineTarget : ITarget
    {
        readonly BenchModel _model;
        readonly IBackend _backend;
        readonly List<IBackend> _others = [];
        readonly RankGroup _group;
        readonly ulong _seed;
        public BatchScheduler Scheduler { get; }

        EngineTarget(ServeSettings o, Action<string> log)
        {
            _seed = o.Seed;
            _backend = o.NewBackend();
            try
            {
                _model = BenchModel.Open(o.Shape, o.Model, _backend, o.Seed);
                if (_backend.AttentionQkFp8) Qk8.RequireHeadDim(_model.Config.HeadDim);
                var options = new StrategyOptions { Strategy = o.Strategy, Ranks = o.Strategy == StrategyKind.Full ? 1 : o.Ranks, FallbackBelow = 0 };
                _group = RankGroup.Create(_model.Config, options, r =>
                {
                    if (r == 0) return _backend;
                    var b = o.NewBackend();
                    _others.Add(b);
                    return b;
                }, _ => _model.Weights, ownsBackends: false);
                // No stop tokens and no text: every request runs to its token budget (vLLM's ignore_eos).
                Scheduler = new BatchScheduler(_group, null, new HashSet<int>(),
                    new SchedulerOptions { MaxBatch = o.MaxBatch, PrefillChunk = o.PrefillChunk });
                log($"{_model.Name} on {_backend.Name}, {options.Strategy.ToString().ToLowerInvariant()} x{options.Ranks}; " +
                    $"max batch {o.MaxBatch}, prefill chunk {o.PrefillChunk}, KV budget {Scheduler.BudgetBytes / (double)(1L << 30):F1} GiB per rank");
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        public static EngineTarget Open(ServeSettings o, Action<string> log) => new(o, log);

        public Task<RequestTiming> Send(int promptTokens, int maxTokens, int index, CancellationToken cancel) =>
            Send(promptTokens, maxTokens, index, cancel, null);

        /// <param name="firstToken">called once the request's first token is out (it is decoding from then on)</param>
        public async Task<RequestTiming> Send(int promptTokens, int maxTokens, int index, CancellationToken cancel, Action? firstToken)
        {
            var rng = BenchModel.CaseRandom(_seed, index * 7919 + promptTokens);
            int vocab = _model.Config.VocabSize;
            var ids = Enumerable.Range(0, promptTokens).Select(_ => rng.Next(vocab)).ToArray();
            var prompt = new PromptTokens(ids[..^1], [ids[^1]], 0);
            var job = new CompletionJob(prompt, new SamplingOptions { MaxNewTokens = maxTokens }, []);
            long start = Stopwatch.GetTimestamp();
            try
            {
                var r = await Scheduler.RunAsync(job with { ArrivedAt = start }, null, cancel, firstToken).ConfigureAwait(false);
                return new RequestTiming(promptTokens, r.CompletionTokens, r.TimeToFirstToken.TotalSeconds, Stopwatch.GetElapsedTime(start).TotalSeconds, null);
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                return new RequestTiming(promptTokens, 0, double.NaN, Stopwatch.GetElapsedTime(start).TotalSeconds, "cancelled");
            }
        }

        public void Dispose()
        {
            Scheduler?.Dispose();
            _group?.Dispose();
            foreach (var b in _others) b.Dispose();
            _backend?.Dispose();
            _model?.Bundle?.Dispose();
        }
    }
}
