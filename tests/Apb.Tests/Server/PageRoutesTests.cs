using System.Text.Json;
using Apb.Diagnostics;
using Xunit;

namespace Apb.Tests.Server;

/// <summary>
/// What the page stands on, over plain HTTP: GET / and its files from the binary's resources, "apb_timings" (only when
/// asked; the per-rank table as <see cref="RankProfileTable"/> has it), the strategy in the model card, and the page's
/// own origin allowed to POST while other origins still are not.
/// </summary>
[Collection(ServerCollection.Name)]
public class PageRoutesTests(SharedServer shared)
{
    const string Chat = "/v1/chat/completions";
    const string Ask = """{"messages": [{"role": "user", "content": "The mill grinds grain.\n\nWhat does the mill grind?"}], "max_tokens": 3, "temperature": 0""";

    [Fact]
    public async Task ThePageAndItsFilesComeFromTheBinaryWithAStrictPolicy()
    {
        var http = shared.Http;
        foreach (var (path, type, marker) in new[]
                 {
                     ("/", "text/html", "<script src=\"/page.js\" defer></script>"),
                     ("/page.js", "text/javascript", "apb_timings: true"),
                     ("/page.css", "text/css", "@media (max-width"),
                 })
        {
            using var r = await http.GetAsync(path);
            Assert.Equal(200, (int)r.StatusCode);
            Assert.Equal(type, r.Content.Headers.ContentType?.MediaType);
            Assert.Contains(marker, await r.Content.ReadAsStringAsync());
            string policy = string.Join(";", r.Headers.GetValues("Content-Security-Policy"));
            Assert.Contains("default-src 'none'", policy);
            Assert.Contains("connect-src 'self'", policy);
            Assert.Equal("nosniff", r.Headers.GetValues("X-Content-Type-Options").Single());
        }
        // Nothing in the page is fetched from elsewhere.
        foreach (var path in new[] { "/", "/page.js", "/page.css" })
            Assert.DoesNotMatch("(https?:)?//[a-z]", await http.GetStringAsync(path));

        using var post = await http.PostAsync("/", Harness.Json("{}"));
        Assert.Equal(405, (int)post.StatusCode);
        Assert.Equal("GET", post.Content.Headers.Allow.Single());
    }

    [Fact]
    public async Task TimingsComeOnlyWhenAskedAndCarryTheRankTable()
    {
        var http = shared.Http;
        var (status, plain) = await Harness.PostAsync(http, Chat, Ask + "}");
        Assert.Equal(200, status);
        Assert.False(plain.TryGetProperty("timings", out _));
        var (_, events) = await Harness.StreamAsync(http, Chat, Ask + ", \"stream\": true}");
        Assert.DoesNotContain(events, e => e.Contains("\"timings\""));

        var (status2, body) = await Harness.PostAsync(http, Chat, Ask + ", \"apb_timings\": true}");
        Assert.Equal(200, status2);
        var t = body.GetProperty("timings");
        var usage = body.GetProperty("usage");
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32(), t.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(usage.GetProperty("completion_tokens").GetInt32(), t.GetProperty("completion_tokens").GetInt32());
        Assert.True(t.GetProperty("prefill_ms").GetDouble() > 0);
        Assert.True(t.GetProperty("time_to_first_token_ms").GetDouble() >= t.GetProperty("prefill_ms").GetDouble());
        Assert.StartsWith("full, 1 rank(s)", t.GetProperty("strategy").GetString());
        // Full attention: rank 0's row alone, in the CLI table's columns, its total the sum of its phases.
        var table = t.GetProperty("prefill_ranks");
        Assert.Equal(RankProfileTable.Columns, table.GetProperty("columns").EnumerateArray().Select(c => c.GetString()));
        var row = table.GetProperty("rows").EnumerateArray().Single();
        Assert.Equal(0, row.GetProperty("rank").GetInt32());
        var values = row.GetProperty("values").EnumerateArray().Select(v => v.GetDouble()).ToArray();
        int phases = Profile.Phases.Length;
        Assert.Equal(values[..phases].Sum(), values[phases], 0.01);
        Assert.True(values[phases] > 0, "the prefill's total time is zero");
        Assert.False(table.TryGetProperty("max_over_mean", out _));

        // Streamed: on the chunk that carries finish_reason.
        (_, events) = await Harness.StreamAsync(http, Chat, Ask + ", \"stream\": true, \"apb_timings\": true}");
        var withTimings = events.Where(e => e.Contains("\"timings\"")).Select(e => JsonDocument.Parse(e).RootElement).Single();
        Assert.NotEqual(JsonValueKind.Null, withTimings.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind);
        Assert.Equal(values.Length, withTimings.GetProperty("timings").GetProperty("prefill_ranks").GetProperty("rows")[0].GetProperty("values").GetArrayLength());

        var (bad, error) = await Harness.PostAsync(http, Chat, Ask + ", \"apb_timings\": \"yes\"}");
        Assert.Equal(400, bad);
        Assert.Equal("apb_timings", error.GetProperty("error").GetProperty("param").GetString());
    }

    /// <summary>
    /// /v1/completions takes the same extension: benchmark clients time long prompts there, as raw text. The timings
    /// agree with the usage, come on the chunk with choice 0's finish_reason when streamed, and not at all unasked.
    /// </summary>
    [Fact]
    public async Task TextCompletionsCarryTimingsWhenAsked()
    {
        var http = shared.Http;
        const string Text = "/v1/completions";
        const string Prompt = """{"prompt": "The mill grinds grain. The mill grinds", "max_tokens": 2, "temperature": 0, "n": 2""";
        var (_, plain) = await Harness.PostAsync(http, Text, Prompt + "}");
        Assert.False(plain.TryGetProperty("timings", out _));

        var (status, body) = await Harness.PostAsync(http, Text, Prompt + ", \"apb_timings\": true}");
        Assert.Equal(200, status);
        var t = body.GetProperty("timings");
        var usage = body.GetProperty("usage");
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32(), t.GetProperty("prompt_tokens").GetInt32());
        // Choice 0's tokens (the usage sums both choices').
        int mine = t.GetProperty("completion_tokens").GetInt32();
        Assert.InRange(mine, 1, 2);
        Assert.InRange(usage.GetProperty("completion_tokens").GetInt32(), mine + 1, mine + 2);
        Assert.True(t.GetProperty("prefill_ms").GetDouble() > 0);
        Assert.Equal(RankProfileTable.Columns,
            t.GetProperty("prefill_ranks").GetProperty("columns").EnumerateArray().Select(c => c.GetString()));

        var (_, events) = await Harness.StreamAsync(http, Text, Prompt + ", \"stream\": true, \"apb_timings\": true}");
        var timed = events.Where(e => e.Contains("\"timings\"")).Select(e => JsonDocument.Parse(e).RootElement).Single();
        var choice = timed.GetProperty("choices").EnumerateArray().Single();
        Assert.Equal(0, choice.GetProperty("index").GetInt32());
        Assert.NotEqual(JsonValueKind.Null, choice.GetProperty("finish_reason").ValueKind);
        Assert.True(timed.GetProperty("timings").GetProperty("time_to_first_token_ms").GetDouble() > 0);

        var (bad, error) = await Harness.PostAsync(http, Text, Prompt + ", \"apb_timings\": 1}");
        Assert.Equal(400, bad);
        Assert.Equal("apb_timings", error.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task ThePagesOwnOriginMayPostAndOthersStillMayNot()
    {
        var http = shared.Http;
        var address = shared.Server.Address;
        async Task<HttpResponseMessage> From(string origin)
        {
            using var r = new HttpRequestMessage(HttpMethod.Post, "/tokenize") { Content = Harness.Json("""{"prompt": "hello"}""") };
            r.Headers.Add("Origin", origin);
            return await http.SendAsync(r);
        }
        using var own = await From($"{address.Scheme}://{address.Authority}");
        Assert.Equal(200, (int)own.StatusCode);
        Assert.False(own.Headers.Contains("Access-Control-Allow-Origin"), "the page's own requests need no CORS headers");
        using var otherPort = await From($"{address.Scheme}://{address.Host}:{address.Port + 1}");
        Assert.Equal(403, (int)otherPort.StatusCode);
        using var otherSite = await From("https://evil.example");
        Assert.Equal(403, (int)otherSite.StatusCode);
    }
}
