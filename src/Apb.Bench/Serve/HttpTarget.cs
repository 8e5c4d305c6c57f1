using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Apb.Engine;
using Apb.Tokenization;

namespace Apb.Bench.Serve;

/// <summary>
/// A running server's OpenAI API as a benchmark target: streaming /v1/completions, timed from sending to the first
/// content chunk (TTFT) and to the final chunk, usage from the stream's last chunk (stream_options.include_usage).
/// Prompts are made of words that the model's tokenizer (--model DIR: the served model's folder) turns into exactly
/// the asked number of tokens, so prompt lengths mean the same as in the engine's runs.
/// </summary>
sealed class HttpTarget : ITarget
{
    readonly HttpClient _http;
    readonly HfTokenizer? _tokenizer;
    readonly string _model;
    static readonly string[] Words = ["the", "river", "mill", "grain", "stone", "village", "north", "wind", "harbor", "bridge",
        "market", "lantern", "orchard", "copper", "valley", "season", "ledger", "signal", "garden", "quarry"];

    public HttpTarget(string url, string? modelDir)
    {
        if (!Uri.TryCreate(url.TrimEnd('/') + "/", UriKind.Absolute, out var baseUri) || baseUri.Scheme is not ("http" or "https"))
            throw new ApbException($"--url {url}: expected a server's base URL such as http://127.0.0.1:8000");
        _http = new HttpClient { BaseAddress = baseUri, Timeout = Timeout.InfiniteTimeSpan };
        if (Environment.GetEnvironmentVariable("APB_API_KEY") is { Length: > 0 } key)
            _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        _tokenizer = modelDir is null ? null : ModelBundleTokenizer(modelDir);
        _model = ServedId();
    }

    static HfTokenizer ModelBundleTokenizer(string dir)
    {
        string tok = Path.Combine(dir, "tokenizer.json"), cfg = Path.Combine(dir, "tokenizer_config.json");
        if (!File.Exists(tok)) throw new ApbException($"{tok}: not found (--model names the served model's folder, for its tokenizer)");
        return HfTokenizer.Load(tok, File.Exists(cfg) ? cfg : null);
    }

    /// <summary>The model the server serves (GET /v1/models): requests name it as clients do.</summary>
    string ServedId()
    {
        try
        {
            using var doc = JsonDocument.Parse(_http.GetStringAsync("v1/models").GetAwaiter().GetResult());
            return doc.RootElement.GetProperty("data")[0].GetProperty("id").GetString()!;
        }
        catch (Exception e) when (e is HttpRequestException or JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new ApbException($"{_http.BaseAddress}v1/models did not answer as an OpenAI-compatible server ({e.Message}): is `apb serve` running there?");
        }
    }

    /// <summary>A text of words that the tokenizer makes exactly <paramref name="tokens"/> tokens (about that many without one).</summary>
    string Prompt(int tokens, int index)
    {
        var rng = new Random(index * 31 + tokens);
        var sb = new StringBuilder();
        while (true)
        {
            int before = sb.Length;
            sb.Append(Words[rng.Next(Words.Length)]).Append(' ');
            int n = _tokenizer?.Encode(sb.ToString(), addSpecialTokens: true).Count ?? sb.Length / 5;
            if (n > tokens) { sb.Length = before; break; }
            if (n == tokens) break;
        }
        return sb.ToString();
    }

    public async Task<RequestTiming> Send(int promptTokens, int maxTokens, int index, CancellationToken cancel)
    {
        string model = JsonSerializer.Serialize(_model, BenchJson.Default.String);
        string promptJson = JsonSerializer.Serialize(Prompt(promptTokens, index), BenchJson.Default.String);
        string body = "{\"model\":" + model + ",\"prompt\":" + promptJson + ",\"max_tokens\":" + maxTokens +
                      ",\"temperature\":0,\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
        long start = Stopwatch.GetTimestamp();
        double ttft = double.NaN;
        int prompt = promptTokens, output = 0;
        try
        {
            using var req = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var resp = await _http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, cancel).ConfigureAwait(false);
            if (!resp.IsSuccessStatusCode)
                return new RequestTiming(promptTokens, 0, double.NaN, Stopwatch.GetElapsedTime(start).TotalSeconds,
                    $"HTTP {(int)resp.StatusCode}: {await resp.Content.ReadAsStringAsync(cancel).ConfigureAwait(false)}");
            using var reader = new StreamReader(await resp.Content.ReadAsStreamAsync(cancel).ConfigureAwait(false));
            while (await reader.ReadLineAsync(cancel).ConfigureAwait(false) is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                string data = line[6..];
                if (data == "[DONE]") break;
                using var doc = JsonDocument.Parse(data);
                var root = doc.RootElement;
                if (root.TryGetProperty("error", out var err))
                    return new RequestTiming(promptTokens, output, ttft, Stopwatch.GetElapsedTime(start).TotalSeconds, err.ToString());
                if (root.TryGetProperty("choices", out var choices) && choices.GetArrayLength() > 0 &&
                    choices[0].TryGetProperty("text", out var text) && text.GetString() is { Length: > 0 } && double.IsNaN(ttft))
                    ttft = Stopwatch.GetElapsedTime(start).TotalSeconds;
                if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
                {
                    prompt = usage.GetProperty("prompt_tokens").GetInt32();
                    output = usage.GetProperty("completion_tokens").GetInt32();
                }
            }
            return new RequestTiming(prompt, output, ttft, Stopwatch.GetElapsedTime(start).TotalSeconds, null);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or JsonException)
        {
            return new RequestTiming(promptTokens, output, ttft, Stopwatch.GetElapsedTime(start).TotalSeconds, e.Message);
        }
    }

    public void Dispose() => _http.Dispose();
}

[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
sealed partial class BenchJson : System.Text.Json.Serialization.JsonSerializerContext;
