using System.Diagnostics;
using System.Globalization;
using System.Text;
using Apb.Serving;

namespace Apb.Server;

/// <summary>
/// Counters behind GET /metrics, written in Prometheus' text format: requests by endpoint and status, the admission
/// queue, the engine's load (batch, waiting sequences, KV-cache bytes per rank) and token rates, both as running
/// averages and throughput over the last minute (gauges, readable by eye) and as raw token and second counters (for
/// rate() over a window of the scraper's choice).
/// </summary>
public sealed class ServerMetrics
{
    // Seconds; time to first token spans from tens of milliseconds (short prompt, idle server) to minutes
    // (a long document prefilled on the CPU, or a long wait in line).
    static readonly double[] TtftBuckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
    static readonly TimeSpan Window = TimeSpan.FromMinutes(1);

    readonly Lock _lock = new();
    readonly SortedDictionary<(string Endpoint, int Status), long> _requests = new();
    readonly long[] _ttftCounts = new long[TtftBuckets.Length];
    long _ttftCount, _completions, _promptTokens, _generatedTokens, _decodeSteps;
    double _ttftSum, _prefillSeconds, _decodeSeconds;
    // The engine's token counters as seen by earlier scrapes (and at start), oldest first: the throughput gauges
    // compare now with the oldest one inside the window.
    readonly Queue<(long At, long Prompt, long Generated)> _samples = new();

    /// <param name="atStart">the engine's load when the server started (its counters may already be past zero)</param>
    public ServerMetrics(EngineLoad atStart) => _samples.Enqueue((Stopwatch.GetTimestamp(), atStart.PromptTokens, atStart.GeneratedTokens));

    /// <summary>The label for a path: the API's own paths, everything else "other" so clients cannot grow the series.</summary>
    public static string Endpoint(string? path) => path switch
    {
        "/v1/chat/completions" or "/v1/completions" or "/v1/models" or "/tokenize" or "/detokenize" or "/health" or "/metrics" => path,
        _ => "other",
    };

    public void CountRequest(string endpoint, int status)
    {
        lock (_lock) _requests[(endpoint, status)] = _requests.GetValueOrDefault((endpoint, status)) + 1;
    }

    public long Requests(string endpoint, int status)
    {
        lock (_lock) return _requests.GetValueOrDefault((endpoint, status));
    }

    public void Observe(CompletionResult r)
    {
        lock (_lock)
        {
            _completions++;
            _promptTokens += r.PromptTokens;
            _generatedTokens += r.CompletionTokens;
            _decodeSteps += Math.Max(r.CompletionTokens - 1, 0);
            _prefillSeconds += r.PrefillTime.TotalSeconds;
            _decodeSeconds += r.DecodeTime.TotalSeconds;
            double t = r.TimeToFirstToken.TotalSeconds;
            _ttftCount++;
            _ttftSum += t;
            for (int i = 0; i < TtftBuckets.Length; i++) if (t <= TtftBuckets[i]) _ttftCounts[i]++;
        }
    }

    public string Render(RequestQueue queue, EngineLoad load)
    {
        var s = new StringBuilder();
        lock (_lock)
        {
            var (promptRate, generatedRate) = Throughput(load);
            Header(s, "apb_requests_total", "counter", "HTTP requests answered, by endpoint and status (499: the client went away first).");
            foreach (var ((endpoint, status), n) in _requests)
                s.Append("apb_requests_total{endpoint=\"").Append(endpoint).Append("\",status=\"").Append(status).Append("\"} ").Append(n).Append('\n');
            Gauge(s, "apb_queue_depth", "Requests waiting for a generation slot.", queue.Waiting);
            Gauge(s, "apb_queue_capacity", "Most requests that may wait before the server answers 429.", queue.MaxWaiting);
            Gauge(s, "apb_in_flight", "Requests generating now.", queue.Running);
            Gauge(s, "apb_concurrency", "Most requests generating at once.", queue.Concurrency);
            Gauge(s, "apb_batch_size", "Sequences in the engine's running batch (decoding, or being prefilled); one per choice of a request.", load.Running);
            Gauge(s, "apb_engine_waiting", "Sequences admitted by the server that wait inside the engine for memory or a place in the batch.", load.Waiting);
            PerRank(s, "apb_kv_cache_bytes", "KV-cache bytes of the rows the running sequences have cached now, by rank, from the scheduler's plans (live).",
                load.KvBytesPerRank.Select(b => (double)b));
            Gauge(s, "apb_kv_cache_reserved_bytes", "KV-cache and prefill bytes the running sequences reserved on the busiest rank (0 where memory is not tracked).", load.ReservedBytes);
            Gauge(s, "apb_kv_cache_budget_bytes", "KV-cache and prefill bytes per rank the engine may reserve (0 where memory is not tracked).", load.BudgetBytes);
            Counter(s, "apb_engine_prompt_tokens_total", "Prompt tokens the engine prefilled (counted when each prefill ends, finished or not).", load.PromptTokens);
            Counter(s, "apb_engine_generation_tokens_total", "Tokens the engine generated (counted as they come).", load.GeneratedTokens);
            Counter(s, "apb_engine_decode_steps_total", "Batched decode steps the engine ran.", load.DecodeSteps);
            Gauge(s, "apb_prompt_throughput_tokens_per_second", "Prompt tokens prefilled per second of wall time over the last minute (since the previous scrape when scrapes are further apart).", promptRate);
            Gauge(s, "apb_generation_throughput_tokens_per_second", "Tokens generated per second of wall time over the last minute (since the previous scrape when scrapes are further apart).", generatedRate);
            Counter(s, "apb_completions_total", "Generations that ran to their end.", _completions);
            Counter(s, "apb_prompt_tokens_total", "Prompt tokens prefilled by finished generations.", _promptTokens);
            Counter(s, "apb_generation_tokens_total", "Tokens generated by finished generations.", _generatedTokens);
            Counter(s, "apb_prefill_seconds_total", "Time spent in prefill.", _prefillSeconds);
            Counter(s, "apb_decode_seconds_total", "Time spent in decode steps.", _decodeSeconds);
            Gauge(s, "apb_prefill_tokens_per_second", "Prompt tokens per second of prefill, over all finished generations.",
                _prefillSeconds > 0 ? _promptTokens / _prefillSeconds : 0);
            Gauge(s, "apb_decode_tokens_per_second", "Decode steps per second, over all finished generations.",
                _decodeSeconds > 0 ? _decodeSteps / _decodeSeconds : 0);
            if (load.Ranks is { } ranks)
            {
                PerRank(s, "apb_rank_sequences", "Sequences (requests' KV caches) each rank holds, as the rank last reported.",
                    ranks.Select(r => (double)r.Sequences));
                PerRank(s, "apb_rank_kv_cache_bytes", "KV-cache bytes each rank has allocated, as the rank itself last reported (asked when idle and about once a second): above apb_kv_cache_bytes once idle means memory left behind.",
                    ranks.Select(r => (double)r.KvCacheBytes));
                if (ranks.All(r => r.Device.Tracked))
                    PerRank(s, "apb_rank_device_bytes_in_use", "Device bytes each rank's backend holds (weights, caches, workspaces).",
                        ranks.Select(r => (double)r.Device.InUseBytes));
            }
            Header(s, "apb_time_to_first_token_seconds", "histogram", "From request arrival (waiting in line included) to the first token's logits.");
            for (int i = 0; i < TtftBuckets.Length; i++)
                s.Append("apb_time_to_first_token_seconds_bucket{le=\"").Append(Num(TtftBuckets[i])).Append("\"} ").Append(_ttftCounts[i]).Append('\n');
            s.Append("apb_time_to_first_token_seconds_bucket{le=\"+Inf\"} ").Append(_ttftCount).Append('\n');
            s.Append("apb_time_to_first_token_seconds_sum ").Append(Num(_ttftSum)).Append('\n');
            s.Append("apb_time_to_first_token_seconds_count ").Append(_ttftCount).Append('\n');
        }
        return s.ToString();
    }

    // Rates of the engine's counters from the oldest sample inside the window (or the newest one before it) to now.
    (double Prompt, double Generated) Throughput(EngineLoad load)
    {
        long now = Stopwatch.GetTimestamp();
        while (_samples.Count > 1 && Stopwatch.GetElapsedTime(_samples.ElementAt(1).At, now) >= Window) _samples.Dequeue();
        var (at, prompt, generated) = _samples.Peek();
        // At most one sample a second: a client that scrapes in a loop cannot grow the queue past ~60 entries.
        if (Stopwatch.GetElapsedTime(_samples.Last().At, now) >= TimeSpan.FromSeconds(1)) _samples.Enqueue((now, load.PromptTokens, load.GeneratedTokens));
        double seconds = Stopwatch.GetElapsedTime(at, now).TotalSeconds;
        return seconds > 0 ? ((load.PromptTokens - prompt) / seconds, (load.GeneratedTokens - generated) / seconds) : (0, 0);
    }

    static void Header(StringBuilder s, string name, string type, string help) =>
        s.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n').Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');

    static void PerRank(StringBuilder s, string name, string help, IEnumerable<double> values)
    {
        Header(s, name, "gauge", help);
        int r = 0;
        foreach (var v in values) s.Append(name).Append("{rank=\"").Append(r++).Append("\"} ").Append(Num(v)).Append('\n');
    }

    static void Gauge(StringBuilder s, string name, string help, double value)
    {
        Header(s, name, "gauge", help);
        s.Append(name).Append(' ').Append(Num(value)).Append('\n');
    }

    static void Counter(StringBuilder s, string name, string help, double value)
    {
        Header(s, name, "counter", help);
        s.Append(name).Append(' ').Append(Num(value)).Append('\n');
    }

    static string Num(double v) => v.ToString("R", CultureInfo.InvariantCulture);
}
