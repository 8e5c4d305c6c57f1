using System.Diagnostics;
using System.Text.Json;
using Apb.Server;
using Xunit;

namespace Apb.Tests.Server;

/// <summary>The bounded queue (429 at once when full), client cancellation freeing sessions, and failures isolated to one request.</summary>
[Collection(ServerCollection.Name)]
public class AdmissionTests
{
    const string Chat = "/v1/chat/completions";

    static string Body(int maxTokens, bool stream = false) =>
        $$"""{"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": {{maxTokens}}, "temperature": 0, "stream": {{(stream ? "true" : "false")}}}""";

    [Fact]
    public async Task FullQueueAnswers429AtOnceAndWaitersStillFinish()
    {
        var probe = new ProbeSessions();
        await using var server = await Harness.StartAsync(Harness.Model(probe.New), new ServerOptions { Concurrency = 1, MaxQueue = 1 });
        using var http = Harness.Http(server);
        probe.Gate.Reset();
        try
        {
            var running = Harness.PostAsync(http, Chat, Body(4));
            await Harness.WaitUntilAsync(() => server.Runner.Queue.Running == 1, "the first request to hold the slot");
            var waiting = Harness.PostAsync(http, Chat, Body(4));
            await Harness.WaitUntilAsync(() => server.Runner.Queue.Waiting == 1, "the second request to wait in line");

            // "At once" is an order, not a time: the 429 comes back while the gate still holds the slot's request and the
            // waiter, so it did not wait for a slot. The cancel only turns a wrongly queued request into a failure, not a hang.
            using var noHang = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            using var refused = await http.PostAsync(Chat, Harness.Json(Body(4)), noHang.Token);
            Assert.Equal(429, (int)refused.StatusCode);
            Assert.False(running.IsCompleted || waiting.IsCompleted, "the 429 came after a held request finished");
            Assert.Equal((1, 1), (server.Runner.Queue.Running, server.Runner.Queue.Waiting));
            Assert.Equal("1", refused.Headers.RetryAfter?.ToString());
            var error = JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Equal("rate_limit_exceeded", error.GetProperty("code").GetString());
            Assert.Contains("the server is busy", error.GetProperty("message").GetString());

            // Streaming requests are refused the same way, before any event is sent.
            var (streamStatus, events) = await Harness.StreamAsync(http, Chat, Body(4, stream: true));
            Assert.Equal(429, streamStatus);
            Assert.Empty(events);

            probe.Gate.Set();
            Assert.Equal(200, (await running).Status);
            Assert.Equal(200, (await waiting).Status);
            Assert.Equal(2, await Harness.MetricAsync(http, "apb_requests_total{endpoint=\"/v1/chat/completions\",status=\"429\"}"));
            Assert.Equal(0, probe.Live);
        }
        finally { probe.Gate.Set(); }
    }

    [Fact]
    public async Task ClientThatLeavesTheQueueNeverRuns()
    {
        var probe = new ProbeSessions();
        await using var server = await Harness.StartAsync(Harness.Model(probe.New), new ServerOptions { Concurrency = 1, MaxQueue = 4 });
        using var http = Harness.Http(server);
        probe.Gate.Reset();
        try
        {
            var running = Harness.PostAsync(http, Chat, Body(2));
            await Harness.WaitUntilAsync(() => server.Runner.Queue.Running == 1, "the first request to run");
            using var leave = new CancellationTokenSource();
            var waiting = Harness.PostAsync(http, Chat, Body(2), leave.Token);
            await Harness.WaitUntilAsync(() => server.Runner.Queue.Waiting == 1, "the second request to wait");
            leave.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
            await Harness.WaitUntilAsync(() => server.Runner.Queue.Waiting == 0, "the cancelled waiter to leave the line");
            probe.Gate.Set();
            Assert.Equal(200, (await running).Status);
            Assert.Equal(1, probe.Created);
        }
        finally { probe.Gate.Set(); }
    }

    [Fact]
    public async Task DisconnectMidStreamCancelsGenerationAndFreesTheSession()
    {
        var probe = new ProbeSessions { DecodeDelayMs = 20 };
        await using var server = await Harness.StartAsync(Harness.Model(probe.New));
        using var http = Harness.Http(server);
        using var request = new HttpRequestMessage(HttpMethod.Post, Chat) { Content = Harness.Json(Body(2000, stream: true)) };
        using (var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(200, (int)response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            int contentEvents = 0;
            while (contentEvents < 3 && await reader.ReadLineAsync() is { } line)
                if (line.Contains("\"content\":\"") && !line.Contains("\"content\":\"\"")) contentEvents++;
            Assert.Equal(3, contentEvents);
        } // disposing the response mid-stream closes the connection

        await Harness.WaitUntilAsync(() => probe.Live == 0 && server.Runner.Queue.Running == 0, "the session to be disposed", 5);
        Assert.True(probe.Decodes < 500, $"generation went on for {probe.Decodes} steps after the client left");
        await Harness.WaitUntilAsync(() => server.Metrics.Requests("/v1/chat/completions", 499) == 1, "the request to be logged as 499", 5);

        var (status, _) = await Harness.PostAsync(http, Chat, Body(2));
        Assert.Equal(200, status);
    }

    [Fact]
    public async Task UnexpectedFailureIs500AndTheServerKeepsServing()
    {
        var probe = new ProbeSessions();
        await using var server = await Harness.StartAsync(Harness.Model(probe.New));
        using var http = Harness.Http(server);

        probe.FailNextPrefill();
        var (status, error) = await Harness.PostAsync(http, Chat, Body(3));
        Assert.Equal(500, status);
        var e = error.GetProperty("error");
        Assert.Equal("server_error", e.GetProperty("type").GetString());
        Assert.Contains("prefill failed on purpose", e.GetProperty("message").GetString());

        probe.FailNextPrefill();
        var (streamStatus, events) = await Harness.StreamAsync(http, Chat, Body(3, stream: true));
        Assert.Equal(200, streamStatus);
        Assert.Contains(events, ev => ev.Contains("\"server_error\"") && ev.Contains("prefill failed on purpose"));
        Assert.Equal("[DONE]", events[^1]); // the stream still ends as OpenAI's do

        var (ok, _) = await Harness.PostAsync(http, Chat, Body(3));
        Assert.Equal(200, ok);
        Assert.Equal(0, probe.Live);
        Assert.Equal(0, server.Runner.Queue.Running);
    }
}
