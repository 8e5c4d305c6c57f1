namespace Apb.Server;

/// <summary>How `apb serve` listens and admits requests.</summary>
public sealed record ServerOptions
{
    /// <summary>An IP address ("127.0.0.1", "0.0.0.0", "::1") or "localhost".</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port (tests); <see cref="ApbServer.Address"/> says which.</summary>
    public int Port { get; init; } = 8000;
    /// <summary>Requests generating at once. 1 on the CPU: one forward pass already uses every core.</summary>
    public int Concurrency { get; init; } = 1;
    /// <summary>Requests waiting behind the running ones; one more is answered 429 at once.</summary>
    public int MaxQueue { get; init; } = 64;
    /// <summary>max_tokens for a chat request that gives none (trimmed to what fits the context).</summary>
    public int DefaultMaxTokens { get; init; } = 1024;
    /// <summary>max_tokens for /v1/completions when none is given: OpenAI's legacy default.</summary>
    public int DefaultCompletionMaxTokens { get; init; } = 16;
    /// <summary>Largest request body read (413 above it); null: <see cref="RequestBytesFor"/> the model's context.</summary>
    public long? MaxRequestBytes { get; init; }
    /// <summary>Host names clients may use besides IP addresses, localhost and this machine's name ("*": any). See <see cref="OriginPolicy"/>.</summary>
    public IReadOnlyList<string> AllowedHosts { get; init; } = [];
    /// <summary>Web origins (scheme://host[:port]) whose pages may call the API, answered with CORS headers ("*": any). None by default.</summary>
    public IReadOnlyList<string> AllowedOrigins { get; init; } = [];
    /// <summary>
    /// The body limit for a model of <paramref name="maxPositions"/> tokens: <see cref="MaxRequestBytes"/> when set, else
    /// 32 bytes per token of context between 1 MiB and 64 MiB. A token of text is ~4 bytes of English and up to ~12 of
    /// JSON-escaped CJK or emoji (\uXXXX), so a prompt that fits the context fits the body; a body many times larger
    /// cannot fit, and refusing it unread keeps the memory a request can take in proportion to the model's context
    /// (32K tokens: 1 MiB; 128K: 4 MiB; 1M: 32 MiB).
    /// </summary>
    public long RequestBytesFor(int maxPositions) => MaxRequestBytes ?? Math.Clamp(32L * maxPositions, 1L << 20, 64L << 20);

    /// <summary>
    /// The key clients must send as "Authorization: Bearer KEY" (401 otherwise) to /v1/..., /tokenize and /detokenize;
    /// null: no key (anyone who reaches the port may use the model). See <see cref="ApiKeyCheck"/>.
    /// </summary>
    public string? ApiKey { get; init; }

    /// <summary>One line per request (UTC time, method, path, status, seconds; tokens and strategy of a completion), or null for none.</summary>
    public TextWriter? Log { get; init; }
}
