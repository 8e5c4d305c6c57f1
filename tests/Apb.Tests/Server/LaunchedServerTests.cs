using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace Apb.Tests.Server;

/// <summary>
/// `apb serve` as one process per rank (`apb launch -- serve --device cpu`, the ranks talking over TCP), driven over
/// HTTP like a user would: 50 concurrent mixed requests (chat and completions, streaming and not, some cancelled while
/// their prompt is prefilled and some while they decode), checked against a reference server answering the same
/// requests one at a time; then every rank must report that it holds nothing. And a rank killed or stalled under
/// load: the server answers 503 (or ends the stream with an error event), exits non-zero, and leaves no process behind.
/// </summary>
[Collection(ServerCollection.Name)]
public class LaunchedServerTests(ITestOutputHelper output)
{
    // The served model's name: the fixture folder's name, as serve calls it by default.
    const string Model = "embedded-random";
    static readonly TimeSpan StartLimit = TimeSpan.FromSeconds(90);
    static string[] Serve(params string[] more) =>
        ["serve", "--model", Repo.TinyModel, "--device", "cpu", "--port", "0", "--concurrency", "8", "--max-queue", "64", "--quiet", .. more];
    static string[] Launch(int processes, params string[] serve) => ["launch", "--nproc-per-node", processes.ToString(CultureInfo.InvariantCulture), "--", .. serve];

    // APB with lengths that fit prompts of a few hundred tokens (the defaults are the paper's, for 32K and more), and
    // no fallback to full attention below 32K, so APB itself runs.
    static readonly string[] ApbFlags = ["--strategy", "apb", "--anchor", "48", "--passing", "16", "--fallback-below", "0"];

    [Fact(Timeout = 600_000)]
    public Task RingOverTwoProcessesAnswersAsOneFullAttentionProcess() =>
        MixedLoadMatchesReference(Launch(2, Serve("--strategy", "ring")), Serve(), ranks: 2);

    [Fact(Timeout = 600_000)]
    public Task ApbOverFourProcessesAnswersAsApbOverFourThreads() =>
        MixedLoadMatchesReference(Launch(4, Serve(ApbFlags)), Serve([.. ApbFlags, "--ranks", "4"]), ranks: 4);

    async Task MixedLoadMatchesReference(string[] launched, string[] reference, int ranks)
    {
        var work = Workload(seed: ranks);
        using var server = await ServerProcess.StartAsync(launched, StartLimit);
        try
        {
            Assert.Equal(ranks, server.RankPids.Count);
            using var sampling = new CancellationTokenSource();
            var peak = SamplePeakKvBytes(server, sampling.Token);
            var watch = Stopwatch.StartNew();
            var answers = await Task.WhenAll(work.Select(w => Send(server.Http, w)));
            output.WriteLine($"{work.Count} requests on {ranks} processes in {watch.Elapsed.TotalSeconds:F1} s");
            sampling.Cancel();

            // Nothing failed: every request that was not cancelled got its answer.
            for (int i = 0; i < work.Count; i++)
                if (work[i].CancelAfter is null)
                    Assert.True(answers[i].Status == 200, $"request {i} ({work[i].Kind}): {answers[i].Status} {answers[i].Text}");

            // Every rank gives its memory back: no sequence and no KV-cache byte held once the requests are over,
            // as each rank reports it (and while they ran, the ranks did hold caches: the metric is not blind).
            var held = await WaitUntilIdle(server, ranks);
            Assert.True(held.All(h => h.Sequences == 0 && h.KvBytes == 0), $"held after the run: {string.Join(", ", held)}\n{server.Log}");
            Assert.True(await peak > 0, "the ranks never reported a KV cache: /metrics did not see the run");

            // The same requests, one at a time, on the reference server: the same text, token for token (greedy).
            using var refServer = await ServerProcess.StartAsync(reference, StartLimit);
            int compared = 0;
            for (int i = 0; i < work.Count; i++)
            {
                if (work[i].CancelAfter is not null) continue;
                var want = await Send(refServer.Http, work[i]);
                Assert.Equal(200, want.Status);
                Assert.True(want.Text == answers[i].Text, $"request {i} ({work[i].Kind}): '{answers[i].Text}' but the reference says '{want.Text}'");
                compared++;
            }
            Assert.Equal(40, compared);

            // And the server still serves after the cancellations: a request that is not cancelled itself (whether a
            // cancelled one was cut before its answer depends on the timing: the workload's first may be one).
            int first = work.FindIndex(w => w.CancelAfter is null);
            var after = await Send(server.Http, work[first]);
            Assert.Equal(200, after.Status);
            Assert.Equal(answers[first].Text, after.Text);
        }
        catch
        {
            output.WriteLine(server.Log);
            throw;
        }
    }

    public enum Fault { KillInPrefill, KillInDecode, StallInDecode }

    [Theory(Timeout = 300_000)]
    [InlineData(Fault.KillInPrefill)]
    [InlineData(Fault.KillInDecode)]
    [InlineData(Fault.StallInDecode)]
    public async Task AFailedRankMakesTheServerAnswer503AndExitWithNothingLeftBehind(Fault fault)
    {
        // A stalled rank (SIGSTOP: alive, silent) is found by the collective timeout, here 5 s instead of 300.
        using var server = await ServerProcess.StartAsync(
            ["launch", "--nproc-per-node", "2", "--collective-timeout", "5", "--", .. Serve("--strategy", "ring")], StartLimit);
        var pids = server.RankPids;
        Assert.Equal(2, pids.Count);
        // In prefill: a prompt of ~10K tokens takes seconds to prefill here. In decode: a short prompt, streamed, the
        // fault once its first token is out (then up to 4000 decode steps).
        bool inPrefill = fault == Fault.KillInPrefill;
        var request = inPrefill
            ? new Request(Kind.Chat, Document(new Random(7), 3000) + "\n\nWhat comes next?", 4000, null)
            : new Request(Kind.ChatStream, Document(new Random(7), 200) + "\n\nWhat comes next?", 4000, null);
        var firstToken = new TaskCompletionSource();
        var inFlight = Send(server.Http, request, onToken: () => firstToken.TrySetResult());
        if (inPrefill)
            await WaitUntil(async () => inFlight.IsCompleted || (await Harness.MetricFamilyAsync(server.Http, "apb_in_flight")).Single() >= 1, TimeSpan.FromSeconds(60));
        else
            await Task.WhenAny(firstToken.Task, inFlight, Task.Delay(TimeSpan.FromSeconds(60)));
        if (inFlight.IsCompleted) Assert.Fail($"the request ended before the fault: {await inFlight}");

        var faultAt = Stopwatch.StartNew();
        string signal = fault == Fault.StallInDecode ? "-STOP" : "-KILL";
        using (var kill = Process.Start("kill", [signal, pids[1].ToString(CultureInfo.InvariantCulture)])) kill.WaitForExit();

        // Not streamed: a 503 naming the rank. Streamed (200 already sent): an error event naming it, then [DONE].
        var answer = await inFlight;
        int expected = inPrefill ? 503 : 500;
        Assert.True(answer.Status == expected, $"in flight: {answer.Status} {answer.Text[..Math.Min(300, answer.Text.Length)]}\n{server.Log}");
        Assert.Contains("rank 1", answer.Text);
        int? code = await server.WaitForExitAsync(TimeSpan.FromSeconds(Math.Max(1, 60 - faultAt.Elapsed.TotalSeconds)));
        Assert.True(code is not null, $"still running 60 s after rank 1 failed:\n{server.Log}");
        Assert.NotEqual(0, code);
        Assert.Contains("error: the ranks failed", server.Log);
        Assert.All(pids.Values, pid => Assert.False(ServerProcess.Alive(pid), $"rank pid {pid} was left running"));
    }

    // ------------------------------------------------------------------------------------------------ the workload

    enum Kind { Chat, ChatStream, Completion, CancelInDecode, CancelInPrefill }

    sealed record Request(Kind Kind, string Prompt, int MaxTokens, TimeSpan? CancelAfter);

    sealed record Answer(int Status, string Text);

    /// <summary>
    /// 18 chat, 14 streamed chat, 8 completions, 5 streamed chats cancelled after their first token (mid-decode) and 5
    /// long prompts cancelled 150 ms in (mid-prefill, or still waiting in line), shuffled.
    /// </summary>
    static List<Request> Workload(int seed)
    {
        var rng = new Random(seed);
        var list = new List<Request>();
        for (int i = 0; i < 18; i++) list.Add(new(Kind.Chat, Question(rng, 60 + rng.Next(200)), 8, null));
        for (int i = 0; i < 14; i++) list.Add(new(Kind.ChatStream, Question(rng, 60 + rng.Next(200)), 8, null));
        for (int i = 0; i < 8; i++) list.Add(new(Kind.Completion, Question(rng, 60 + rng.Next(200)), 6, null));
        for (int i = 0; i < 5; i++) list.Add(new(Kind.CancelInDecode, Question(rng, 100), 400, TimeSpan.Zero));
        for (int i = 0; i < 5; i++) list.Add(new(Kind.CancelInPrefill, Question(rng, 2500), 8, TimeSpan.FromMilliseconds(150)));
        return list.OrderBy(_ => rng.Next()).ToList();
    }

    static readonly string[] Words =
        ["river", "mill", "grain", "village", "stone", "winter", "lantern", "harbor", "copper", "meadow", "signal", "orchard",
         "bridge", "ledger", "falcon", "quarry", "seventeen", "north", "amber", "cellar"];

    static string Document(Random rng, int words) =>
        string.Join(' ', Enumerable.Range(0, words).Select(i => Words[rng.Next(Words.Length)] + (i % 12 == 11 ? "." : "")));

    static string Question(Random rng, int words) =>
        Document(rng, words) + $"\n\nWhich word follows {Words[rng.Next(Words.Length)]}?";

    /// <summary>Sends one request; streamed answers are put together from their deltas. Cancelled ones return status 0.</summary>
    static async Task<Answer> Send(HttpClient http, Request r, Action? onToken = null)
    {
        bool stream = r.Kind is Kind.ChatStream or Kind.CancelInDecode;
        string body = r.Kind == Kind.Completion
            ? $$"""{"model":"{{Model}}","prompt":{{JsonSerializer.Serialize(r.Prompt)}},"max_tokens":{{r.MaxTokens}},"temperature":0}"""
            : $$"""{"model":"{{Model}}","messages":[{"role":"user","content":{{JsonSerializer.Serialize(r.Prompt)}}}],"max_tokens":{{r.MaxTokens}},"temperature":0,"stream":{{(stream ? "true" : "false")}}}""";
        string path = r.Kind == Kind.Completion ? "v1/completions" : "v1/chat/completions";
        using var cancel = new CancellationTokenSource();
        if (r.CancelAfter is { } after && after > TimeSpan.Zero) cancel.CancelAfter(after);
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
            if (!stream || response.StatusCode != HttpStatusCode.OK)
            {
                string text = await response.Content.ReadAsStringAsync(cancel.Token);
                if (response.StatusCode != HttpStatusCode.OK) return new((int)response.StatusCode, text);
                var choice = JsonDocument.Parse(text).RootElement.GetProperty("choices")[0];
                return new(200, r.Kind == Kind.Completion ? choice.GetProperty("text").GetString()! : choice.GetProperty("message").GetProperty("content").GetString()!);
            }
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel.Token));
            var all = new StringBuilder();
            string? failed = null; // a stream that fails ends with an error event, then [DONE]: reported as 500
            while (await reader.ReadLineAsync(cancel.Token) is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                string data = line["data: ".Length..];
                if (data == "[DONE]") return failed is null ? new(200, all.ToString()) : new(500, failed);
                var root = JsonDocument.Parse(data).RootElement;
                if (root.TryGetProperty("error", out var error)) { failed = error.ToString(); continue; }
                if (root.GetProperty("choices") is { ValueKind: JsonValueKind.Array } choices && choices.GetArrayLength() > 0 &&
                    choices[0].GetProperty("delta").TryGetProperty("content", out var piece) && piece.GetString() is { Length: > 0 } s)
                {
                    all.Append(s);
                    onToken?.Invoke();
                    if (r.Kind == Kind.CancelInDecode) cancel.Cancel(); // gone after the first token: mid-decode
                }
            }
            return new(-1, "the stream ended without [DONE]: " + all);
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested) { return new(0, "cancelled"); }
    }

    // ------------------------------------------------------------------------------------------------ /metrics

    static async Task<double> SamplePeakKvBytes(ServerProcess server, CancellationToken stop)
    {
        double peak = 0;
        while (!stop.IsCancellationRequested)
        {
            foreach (var v in await Harness.MetricFamilyAsync(server.Http, "apb_rank_kv_cache_bytes")) peak = Math.Max(peak, v);
            try { await Task.Delay(100, stop); } catch (OperationCanceledException) { }
        }
        return peak;
    }

    static async Task<List<(double Sequences, double KvBytes)>> WaitUntilIdle(ServerProcess server, int ranks)
    {
        List<(double, double)> held = [];
        var until = Stopwatch.StartNew();
        while (until.Elapsed < TimeSpan.FromSeconds(20))
        {
            var sequences = await Harness.MetricFamilyAsync(server.Http, "apb_rank_sequences");
            var bytes = await Harness.MetricFamilyAsync(server.Http, "apb_rank_kv_cache_bytes");
            var busy = (await Harness.MetricFamilyAsync(server.Http, "apb_in_flight")).Single() + (await Harness.MetricFamilyAsync(server.Http, "apb_queue_depth")).Single();
            Assert.Equal(ranks, sequences.Count);
            held = sequences.Zip(bytes).ToList();
            if (busy == 0 && held.All(h => h.Item1 == 0 && h.Item2 == 0)) break;
            await Task.Delay(200);
        }
        return held;
    }

    static async Task WaitUntil(Func<Task<bool>> condition, TimeSpan limit)
    {
        var watch = Stopwatch.StartNew();
        while (!await condition())
        {
            if (watch.Elapsed > limit) throw new TimeoutException($"not within {limit.TotalSeconds:0} s");
            await Task.Delay(50);
        }
    }
}
