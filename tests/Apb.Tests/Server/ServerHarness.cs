using System.ClientModel;
using System.Text;
using System.Text.Json;
using Apb.Backends.Cpu;
using Apb.Engine;
using Apb.Model;
using Apb.Runtime;
using Apb.Server;
using Apb.Serving;
using OpenAI;
using OpenAI.Chat;
using Xunit;

namespace Apb.Tests.Server;

/// <summary>
/// Server tests run alone: they start real servers on loopback, time requests and measure the process' managed heap,
/// none of which means anything while other test classes load the two cores and the heap.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ServerCollection : ICollectionFixture<SharedServer>
{
    public const string Name = "Server";
}

/// <summary>
/// One server on the random-weight fixture (embedded-random) for the tests that only read from it (one request at a time, 1 MiB body limit so
/// the 413 test needs no big upload).
/// </summary>
public sealed class SharedServer : IAsyncLifetime
{
    public const long MaxRequestBytes = 1 << 20;
    public ApbServer Server { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Server = await Harness.StartAsync(Harness.Model(), new ServerOptions { MaxRequestBytes = MaxRequestBytes });
        Http = Harness.Http(Server);
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
    }
}

/// <summary>The random-weight fixture (tests/fixtures/models/embedded-random) opened once for every server test; servers on it start in milliseconds.</summary>
static class Harness
{
    static readonly Lazy<ModelBundle> LazyBundle = new(() => ModelBundle.Open(Repo.TinyModel));
    public static ModelBundle Bundle => LazyBundle.Value;

    // The tiny random checkpoint's folder is embedded-random; the tests call the served model "embedded".
    public const string Id = "embedded";

    public static ServedModel Model(int replicas = 1) => ServedModel.Local(Bundle, () => new CpuBackend(), replicas, Id);

    public static ServedModel Model(SessionFactory sessions) =>
        new(Id, Bundle.Tokenizer, Bundle.Config.MaxPositionEmbeddings, Bundle.StopTokens, sessions);

    public static Task<ApbServer> StartAsync(ServedModel model, ServerOptions? options = null) =>
        ApbServer.StartAsync(model, (options ?? new ServerOptions()) with { Host = "127.0.0.1", Port = 0 });

    public static HttpClient Http(ApbServer server) => new() { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(60) };

    public static ChatClient OpenAiChat(ApbServer server) =>
        new("embedded", new ApiKeyCredential("not-checked"),
            new OpenAIClientOptions { Endpoint = new Uri(server.Address, "v1"), NetworkTimeout = TimeSpan.FromSeconds(60) });

    public static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    public static async Task<(int Status, JsonElement Body)> PostAsync(HttpClient http, string path, string body, CancellationToken cancel = default)
    {
        using var response = await http.PostAsync(path, Json(body), cancel);
        string text = await response.Content.ReadAsStringAsync(cancel);
        return ((int)response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    /// <summary>Posts with "stream": true and collects every SSE data payload up to and including [DONE].</summary>
    public static async Task<(int Status, List<string> Events)> StreamAsync(HttpClient http, string path, string body, CancellationToken cancel = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = Json(body) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
        var events = new List<string>();
        if ((int)response.StatusCode != 200) return ((int)response.StatusCode, events);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel));
        while (await reader.ReadLineAsync(cancel) is { } line)
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal)) events.Add(line["data: ".Length..]);
            else Assert.True(line.Length == 0, $"unexpected SSE line: {line}");
        }
        return (200, events);
    }

    /// <summary>A counter's value from GET /metrics, 0 when absent.</summary>
    public static async Task<double> MetricAsync(HttpClient http, string series)
    {
        string text = await http.GetStringAsync("/metrics");
        foreach (var line in text.Split('\n'))
            if (line.StartsWith(series + " ", StringComparison.Ordinal))
                return double.Parse(line[(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        return 0;
    }

    /// <summary>Every series of a metric family (any labels), in the order /metrics lists them; empty when it is absent.</summary>
    public static async Task<List<double>> MetricFamilyAsync(HttpClient http, string name)
    {
        string text = await http.GetStringAsync("/metrics");
        return text.Split('\n').Where(l => l.StartsWith(name + " ", StringComparison.Ordinal) || l.StartsWith(name + "{", StringComparison.Ordinal))
            .Select(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture)).ToList();
    }

    /// <summary>Polls until <paramref name="condition"/> holds, failing after <paramref name="seconds"/>.</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, string what, double seconds = 10)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"timed out after {seconds} s waiting for {what}");
            await Task.Delay(10);
        }
    }
}

/// <summary>
/// Wraps the real sessions of the random-weight fixture so tests can hold a request in prefill (<see cref="Gate"/>), slow its
/// decode down, make one fail, and see how many sessions are alive.
/// </summary>
sealed class ProbeSessions
{
    // Real sessions on a pool of four models of the random fixture (a session at a time per model).
    static readonly System.Collections.Concurrent.ConcurrentBag<LlamaModel> Models =
        new(Enumerable.Range(0, 4).Select(_ => Harness.Bundle.LoadModel(new CpuBackend())));
    int _created, _disposed, _decodes, _failNext;

    public ManualResetEventSlim Gate { get; } = new(initialState: true);
    public int DecodeDelayMs { get; set; }
    public int Created => Volatile.Read(ref _created);
    public int Live => Volatile.Read(ref _created) - Volatile.Read(ref _disposed);
    public int Decodes => Volatile.Read(ref _decodes);
    public void FailNextPrefill() => Volatile.Write(ref _failNext, 1);

    public IInferenceSession New(PromptTokens prompt, int capacity)
    {
        Interlocked.Increment(ref _created);
        if (!Models.TryTake(out var model)) throw new InvalidOperationException("probe: more live sessions than the pool's four models");
        return new Probe(this, new LocalSession(model, capacity), model);
    }

    sealed class Probe(ProbeSessions owner, IInferenceSession inner, LlamaModel model) : IInferenceSession
    {
        int _disposed;
        public int Length => inner.Length;

        public float[] Prefill(IReadOnlyList<int> context, IReadOnlyList<int> query)
        {
            if (Interlocked.Exchange(ref owner._failNext, 0) == 1) throw new InvalidOperationException("probe: prefill failed on purpose");
            if (!owner.Gate.Wait(TimeSpan.FromSeconds(30))) throw new TimeoutException("probe: the test never opened the gate");
            return inner.Prefill(context, query);
        }

        public float[] Decode(int token)
        {
            Interlocked.Increment(ref owner._decodes);
            if (owner.DecodeDelayMs > 0) Thread.Sleep(owner.DecodeDelayMs);
            return inner.Decode(token);
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            inner.Dispose();
            Models.Add(model);
            Interlocked.Increment(ref owner._disposed);
        }
    }
}
