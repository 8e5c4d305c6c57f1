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
    /// <summary>Largest request body read; a long-context prompt of 1M tokens is ~4 MB of text.</summary>
    public long MaxRequestBytes { get; init; } = 64L << 20;
    /// <summary>One line per request (method, path, status, tokens, time), or null for none.</summary>
    public TextWriter? Log { get; init; }
}
