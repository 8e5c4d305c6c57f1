using System.Text.RegularExpressions;
using Apb.Server;
using Xunit;

namespace Apb.Tests.Server;

/// <summary>The request log: one logfmt line per request with its id, tokens, TTFT, finish reason and strategy, errors and cancels included.</summary>
[Collection(ServerCollection.Name)]
public class RequestLogTests
{
    const string Chat = "/v1/chat/completions";
    const string Line = @"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z id=(req_[0-9a-f]{24}) (GET|POST) /\S* status=\d{3} total=\d+\.\d{3}s";

    static string[] Lines(StringWriter log) => log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public async Task EachRequestIsOneLineWithItsIdTokensTimesAndFinish()
    {
        var log = new StringWriter();
        await using var server = await Harness.StartAsync(Harness.Model(), new ServerOptions { Log = TextWriter.Synchronized(log) });
        using var http = Harness.Http(server);
        using var ok = await http.PostAsync(Chat, Harness.Json(
            """{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "n": 2, "temperature": 0, "user": "ann \"x\"\nb"}"""));
        Assert.Equal(200, (int)ok.StatusCode);
        string id = ok.Headers.GetValues("x-request-id").Single();
        var (status, _) = await Harness.PostAsync(http, Chat, """{"messages": [], "max_tokens": 3}""");
        Assert.Equal(400, status);
        Assert.Equal(200, (int)(await http.GetAsync("/health")).StatusCode);

        var lines = Lines(log);
        Assert.Equal(3, lines.Length);
        Assert.All(lines, l => Assert.Matches(Line, l));
        // The success: its id is the response's x-request-id; tokens of both choices; the client's user field escaped onto the one line.
        var done = lines.Single(l => l.Contains("status=200") && l.Contains(Chat));
        Assert.Equal(id, Regex.Match(done, Line).Groups[1].Value);
        var fields = Regex.Match(done, @"prompt_tokens=(\d+) completion_tokens=(\d+) choices=2 ttft=(\d+\.\d{3})s finish=(\w+),(\w+) strategy=""full[^""]*"" user=""ann \\""x\\""\\u000ab""$");
        Assert.True(fields.Success, done);
        Assert.InRange(int.Parse(fields.Groups[1].Value), 1, 100);
        Assert.InRange(int.Parse(fields.Groups[2].Value), 2, 6);
        // The refusal: a completion's fields, what was not known as "-", finish=error.
        Assert.Contains(lines, l => l.Contains("status=400") && l.EndsWith("prompt_tokens=- completion_tokens=- ttft=- finish=error strategy=-"));
        // Other endpoints: the request alone.
        Assert.Contains(lines, l => Regex.IsMatch(l, Line + "$") && l.Contains("GET /health status=200"));
    }

    [Fact]
    public async Task ACancelledStreamIsLoggedAsCancelled()
    {
        var log = new StringWriter();
        var probe = new ProbeSessions { DecodeDelayMs = 20 };
        await using var server = await Harness.StartAsync(Harness.Model(probe.New), new ServerOptions { Log = TextWriter.Synchronized(log) });
        using var http = Harness.Http(server);
        using var request = new HttpRequestMessage(HttpMethod.Post, Chat)
        {
            Content = Harness.Json("""{"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 2000, "temperature": 0, "stream": true}"""),
        };
        using (var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            for (int events = 0; events < 3 && await reader.ReadLineAsync() is { } sse;)
                if (sse.StartsWith("data: ")) events++;
        } // leaves mid-stream
        await Harness.WaitUntilAsync(() => Lines(log).Length == 1, "the request's log line", 5);
        var line = Lines(log).Single();
        Assert.Matches(Line, line);
        Assert.True(Regex.IsMatch(line, @"POST /v1/chat/completions status=499 .* prompt_tokens=\d+ completion_tokens=- ttft=- finish=cancelled"), line);
    }
}
