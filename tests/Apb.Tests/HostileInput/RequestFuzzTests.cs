using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Apb.Server;
using Apb.Tests.Server;
using Xunit;
using Xunit.Abstractions;

namespace Apb.Tests.HostileInput;

/// <summary>
/// Seeded fuzzing of the HTTP API against one in-process server on the small random model: valid chat and completion
/// requests with fields set to hostile JSON, messages and content parts broken, fields dropped, bytes of the body
/// flipped, cut or made invalid UTF-8, bodies past the size limit or the context, wrong content types, foreign Host and
/// Origin headers, long URLs, large headers, wrong methods and paths. Every answer must come within a bound and be a
/// success (a whole JSON body, or a stream ending in [DONE]) or a 4xx with an OpenAI-style JSON error: never a 5xx, and
/// never more than a bounded amount of memory per request.
/// </summary>
[Collection(FuzzCollection.Name)]
public class RequestFuzzTests(ITestOutputHelper log)
{
    const int Cases = 1000;
    const int Seed = 16_0416;
    const int MaxBody = 256 << 10;
    static readonly TimeSpan CaseLimit = TimeSpan.FromSeconds(30);
    const long CaseBytes = 64L << 20;
    const string AllowedOrigin = "http://localhost:3000";

    static readonly string[] ChatFields =
        ["model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "stop", "n", "logprobs", "tools", "user", "chat_template_kwargs"];
    static readonly string[] TokenizeFields = ["model", "prompt", "messages", "add_special_tokens", "add_generation_prompt", "chat_template_kwargs", "tokens"];
    static readonly string[] TextFields =
        ["model", "prompt", "stream", "stream_options", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "n", "best_of", "echo", "logprobs", "suffix"];
    static readonly string[] ContentTypes =
        ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1", "application/json; charset=utf-8", "APPLICATION/JSON", "application/jsonx", "multipart/form-data; boundary=x", "*/*"];
    static readonly string[] Roles = ["\"user\"", "\"system\"", "\"assistant\"", "\"developer\"", "\"tool\"", "\"robot\"", "\"\"", "\"\\ud800\"", "5", "null"];

    [Fact]
    public async Task HostileRequestsGetSuccessOrA4xxJsonErrorNeverA5xx()
    {
        await using var server = await Harness.StartAsync(Harness.Model(), new ServerOptions
        {
            MaxRequestBytes = MaxBody, DefaultMaxTokens = 3, DefaultCompletionMaxTokens = 3, AllowedOrigins = [AllowedOrigin],
        });
        using var http = new HttpClient { BaseAddress = server.Address, Timeout = CaseLimit };
        var rng = new Random(Seed);
        var statuses = new SortedDictionary<int, int>();
        long most = 0;
        string previous = "";
        var sw = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < Cases; i++)
        {
            var (what, request) = MakeRequest(rng);
            string show = $"case {i}: {request.Method} {request.RequestUri} ({what})";
            long before = GC.GetTotalAllocatedBytes(precise: true);
            using var cancel = new CancellationTokenSource(CaseLimit);
            HttpResponseMessage response;
            string text;
            try
            {
                response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
                text = await response.Content.ReadAsStringAsync(cancel.Token);
            }
            catch (OperationCanceledException) { throw new Xunit.Sdk.XunitException($"{show}: no answer within {CaseLimit.TotalSeconds} s"); }
            catch (HttpRequestException e) { throw new Xunit.Sdk.XunitException($"{show}: {e.Message} ({e.InnerException?.Message}); the case before: {previous}"); }
            long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            most = Math.Max(most, allocated);
            int status = (int)response.StatusCode;
            statuses[status] = statuses.GetValueOrDefault(status) + 1;
            using (response) Check(show, status, response.Content.Headers.ContentType?.MediaType, text);
            Assert.True(allocated < CaseBytes, $"{show}: {allocated / 1e6:F0} MB allocated");
            previous = $"{show} -> {status}";
        }
        log.WriteLine(string.Join(", ", statuses.Select(s => $"{s.Key}: {s.Value}")) + $"; {Cases} cases in {sw.Elapsed.TotalSeconds:F1} s, most allocated by one {most / 1e6:F1} MB");
        int ok = statuses.GetValueOrDefault(200) + statuses.GetValueOrDefault(204);
        Assert.True(ok > Cases / 10 && ok < Cases * 9 / 10, $"{ok} of {Cases} requests succeeded: the mutations are too mild or too coarse");
        Assert.Equal(0, server.Runner.Queue.Running + server.Runner.Queue.Waiting);
    }

    // What Kestrel refuses while parsing the request line or headers never reaches the application, and Kestrel's answer
    // (a 400 with an empty body) cannot be given a body (github.com/aspnet/KestrelHttpServer/issues/2947).
    const string KestrelRefuses = "refused by Kestrel's parser";

    static void Check(string show, int status, string? mediaType, string text)
    {
        Assert.True(status < 500, $"{show}: {status}\n{Cut(text)}");
        if (status == 400 && text.Length == 0 && show.Contains(KestrelRefuses)) return;
        if (status >= 400)
        {
            Assert.True(mediaType == "application/json", $"{show}: {status} with {mediaType ?? "no"} content type\n{Cut(text)}");
            var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
            Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()), $"{show}: empty error message");
            Assert.Contains(error.GetProperty("type").GetString(), new[] { "invalid_request_error", "requests" });
            return;
        }
        if (mediaType == "text/event-stream")
        {
            var events = text.Split('\n').Where(l => l.StartsWith("data: ", StringComparison.Ordinal)).Select(l => l[6..]).ToList();
            Assert.True(events.Count > 0 && events[^1] == "[DONE]", $"{show}: the stream does not end with [DONE]\n{Cut(text)}");
            Assert.DoesNotContain(events, e => e.StartsWith("{\"error\"", StringComparison.Ordinal));
        }
        else if (mediaType == "application/json")
            Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(text).RootElement.ValueKind);
        else if (status != 204)
            Assert.True(mediaType == "text/plain", $"{show}: {status} with {mediaType}"); // /metrics
    }

    static string Cut(string s) => s.Length > 400 ? s[..400] + "..." : s;

    // ---- requests ----

    static (string What, HttpRequestMessage Request) MakeRequest(Random rng)
    {
        int kind = rng.Next(20);
        if (kind >= 18) return Other(rng);
        bool chat = kind < 10;
        // vLLM's /tokenize and /detokenize: no generation, but the same bodies, templates and tokenizer.
        string path = kind switch { < 10 => "/v1/chat/completions", 16 => "/tokenize", 17 => "/detokenize", _ => "/v1/completions" };
        var body = kind switch
        {
            < 10 => ChatTemplate(rng),
            16 => rng.Next(2) == 0 ? TextTemplate(rng) : ChatTemplate(rng),
            17 => new JsonObject { ["tokens"] = new JsonArray(1, 2, 3) },
            _ => TextTemplate(rng),
        };
        var fields = kind switch { < 10 => ChatFields, 16 or 17 => TokenizeFields, _ => TextFields };
        var what = new List<string>();
        var raws = new List<string>(); // spliced in place of Placeholder(i): raw JSON no JSON writer would produce
        if (chat && rng.Next(6) == 0)
        {
            // The text itself: the field every client fills from user input.
            body["messages"]![0]!["content"] = Placeholder(raws.Count);
            raws.Add(rng.Pick(HostileValues.Strings));
            what.Add($"content={Short(raws[^1])}");
        }
        for (int m = rng.Next(0, 3); m > 0; m--)
        {
            switch (rng.Next(6))
            {
                case 0 or 1:
                {
                    string field = rng.Pick(fields);
                    string raw = Value(rng, field);
                    body[field] = Placeholder(raws.Count);
                    raws.Add(raw);
                    what.Add($"{field}={Short(raw)}");
                    break;
                }
                case 2:
                {
                    string field = rng.Pick(fields);
                    body.Remove(field);
                    what.Add($"no {field}");
                    break;
                }
                case 3 when chat:
                    body["messages"] = Placeholder(raws.Count);
                    raws.Add(Messages(rng, out string how));
                    what.Add(how);
                    break;
                case 4:
                    body["stop"] = Placeholder(raws.Count);
                    raws.Add(rng.Next(2) == 0 ? $"[\"\\n\", {rng.Pick(HostileValues.Strings)}]" : rng.Pick(["\"x\"", "[\"\\n\", \"the\"]"]));
                    what.Add($"stop={Short(raws[^1])}");
                    break;
                default:
                    body["stream"] = true;
                    if (rng.Next(2) == 0) body["stream_options"] = new JsonObject { ["include_usage"] = true };
                    what.Add("stream");
                    break;
            }
        }
        string json = body.ToJsonString();
        for (int r = 0; r < raws.Count; r++) json = json.Replace($"\"\\u0001hostile{r}\\u0001\"", raws[r]);
        var bytes = Encoding.UTF8.GetBytes(json);
        switch (rng.Next(12))
        {
            case 0: bytes = HostileValues.MutateBytes(rng, bytes); what.Add("bytes"); break;
            case 1:
                bytes = Encoding.UTF8.GetBytes(rng.Pick(["", "null", "[]", "{", "\"text\"", "{\"messages\": [}", new string('[', 5000) + new string(']', 5000), "{\"a\":" + new string('{', 100)]));
                what.Add("not a request");
                break;
            case 2:
            {
                // Near the limit: a prompt of ~50K tokens, past the 32K context, or a body past the limit.
                int size = rng.Next(2) == 0 ? MaxBody - 1024 : MaxBody + 1024;
                string prompt = string.Concat(Enumerable.Repeat("lorem ipsum dolor sit amet ", size / 27));
                var big = chat ? new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = prompt }) } : new JsonObject { ["prompt"] = prompt };
                bytes = Encoding.UTF8.GetBytes(big.ToJsonString());
                what.Add($"{bytes.Length} bytes");
                break;
            }
        }
        var request = new HttpRequestMessage(rng.Next(25) == 0 ? HttpMethod.Put : HttpMethod.Post, path) { Content = new ByteArrayContent(bytes) };
        string? type = rng.Next(8) == 0 ? (rng.Next(4) == 0 ? null : rng.Pick(ContentTypes)) : "application/json";
        if (type != null) request.Content.Headers.TryAddWithoutValidation("Content-Type", type);
        if (type != "application/json") what.Add($"content-type {type ?? "none"}");
        Headers(rng, request, what);
        return (string.Join(", ", what), request);
    }

    static (string, HttpRequestMessage) Other(Random rng)
    {
        var (method, path) = rng.Pick<(HttpMethod, string)>([
            (HttpMethod.Get, "/v1/models"), (HttpMethod.Get, "/v1/models/embedded"), (HttpMethod.Get, "/v1/models/%00%ff"), (HttpMethod.Get, "/health"),
            (HttpMethod.Get, "/metrics"), (HttpMethod.Get, "/v1/chat/completions"), (HttpMethod.Delete, "/v1/models"), (HttpMethod.Get, "/../../etc/passwd"),
            (HttpMethod.Get, "/v1/" + new string('a', 9000)), (HttpMethod.Options, "/v1/chat/completions"), (HttpMethod.Get, "/v1/models?x=" + new string('b', 100))]);
        var request = new HttpRequestMessage(method, path);
        var what = new List<string>();
        if (path.Contains("%00")) what.Add(KestrelRefuses);
        Headers(rng, request, what);
        return (string.Join(", ", what), request);
    }

    static void Headers(Random rng, HttpRequestMessage request, List<string> what)
    {
        switch (rng.Next(16))
        {
            case 0: request.Headers.Host = rng.Pick(["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.", "[::1]"]); what.Add($"host {request.Headers.Host}"); break;
            case 1:
                string origin = rng.Pick([AllowedOrigin, "https://evil.example", "null", "http://localhost:3000/"]);
                request.Headers.TryAddWithoutValidation("Origin", origin);
                if (request.Method == HttpMethod.Options) request.Headers.TryAddWithoutValidation("Access-Control-Request-Method", "POST");
                what.Add($"origin {origin}");
                break;
            case 2: request.Headers.TryAddWithoutValidation("X-Big", new string('h', rng.Next(20_000, 40_000))); what.Add("big header"); break;
            case 3: request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + new string('k', 100)); break;
        }
    }

    static string Placeholder(int i) => $"\u0001hostile{i}\u0001";

    static JsonObject ChatTemplate(Random rng) => new()
    {
        ["model"] = "embedded",
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = rng.Pick(HostileValues.Texts) is { Length: > 0 } t ? t : "Hi" }),
        ["max_tokens"] = rng.Next(1, 4), ["temperature"] = rng.Next(2) == 0 ? 0 : 0.8,
    };

    static JsonObject TextTemplate(Random rng) => new()
    {
        ["prompt"] = rng.Next(4) == 0 ? new JsonArray(1, 2, 3) : rng.Pick(HostileValues.Texts) is { Length: > 0 } t ? t : "Once",
        ["max_tokens"] = rng.Next(1, 4),
    };

    /// <summary>A hostile value for a field; token counts that would fit are kept small, so no case generates for long.</summary>
    static string Value(Random rng, string field)
    {
        if (field is "model" or "stop" or "prompt" or "suffix" or "user" && rng.Next(2) == 0) return rng.Pick(HostileValues.Strings);
        for (;;)
        {
            string v = rng.Next(3) == 0 ? rng.Pick(HostileValues.Ints).ToString() : rng.Pick(HostileValues.Json);
            if (field is "max_tokens" or "max_completion_tokens" && double.TryParse(v, System.Globalization.CultureInfo.InvariantCulture, out double n) && n is > 4 and < 32768)
                continue;
            return v;
        }
    }

    static string Messages(Random rng, out string how)
    {
        string Part() => rng.Next(3) switch
        {
            0 => $"{{\"type\": \"text\", \"text\": {rng.Pick(rng.Next(2) == 0 ? HostileValues.Strings : HostileValues.Json)}}}",
            1 => $"{{\"type\": {rng.Pick(HostileValues.Json)}, \"text\": \"hi\"}}",
            _ => "{\"type\": \"image_url\", \"image_url\": {\"url\": \"data:,\"}}",
        };
        switch (rng.Next(5))
        {
            case 0: how = "message hostile"; return $"[{rng.Pick(HostileValues.Json)}]";
            case 1: how = "role"; return $"[{{\"role\": {rng.Pick(Roles)}, \"content\": \"hi\"}}]";
            case 2: how = "content"; return $"[{{\"role\": \"user\", \"content\": {rng.Pick(rng.Next(2) == 0 ? HostileValues.Strings : HostileValues.Json)}}}]";
            case 3: how = "content parts"; return $"[{{\"role\": \"user\", \"content\": [{Part()}, {Part()}]}}]";
            default:
                how = "many turns";
                return "[" + string.Join(", ", Enumerable.Range(0, rng.Next(1, 60)).Select(i =>
                    $"{{\"role\": {(i % 2 == 0 ? "\"user\"" : "\"assistant\"")}, \"content\": \"turn {i}\\n\\nquestion {i}?\"}}")) + "]";
        }
    }

    static string Short(string s) => s.Length > 40 ? s[..37] + "..." : s;
}
