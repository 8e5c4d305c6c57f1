using Apb.Engine;

namespace Apb.Serving;

/// <summary>One generation to run: the prompt, how to sample, and the text that ends it early.</summary>
public sealed record CompletionJob(PromptTokens Prompt, SamplingOptions Sampling, IReadOnlyList<string> StopSequences)
{
    /// <summary>When the request arrived (Stopwatch timestamp), so time to first token includes the wait in line.</summary>
    public long ArrivedAt { get; init; } = System.Diagnostics.Stopwatch.GetTimestamp();
    /// <summary>
    /// Record where each rank's prefill time went (<see cref="CompletionResult.PrefillProfiles"/>). Measuring
    /// synchronizes the device at phase edges, so only this request's prefill pays for it, and only when asked.
    /// </summary>
    public bool Timings { get; init; }
}

/// <summary>
/// The outcome of a <see cref="CompletionJob"/>. <see cref="Text"/> is what the client sees (cut before any stop
/// sequence); <see cref="FinishReason"/> is OpenAI's: "stop" (stop token or stop sequence) or "length" (max tokens).
/// </summary>
public sealed record CompletionResult(
    string Text, string FinishReason, int PromptTokens, int CompletionTokens,
    TimeSpan QueueTime, TimeSpan PrefillTime, TimeSpan DecodeTime, TimeSpan TimeToFirstToken)
{
    /// <summary>How the prefill ran (strategy, scorer, ranks), for logs; null where the engine does not say.</summary>
    public string? Strategy { get; init; }
    /// <summary>
    /// Per rank, where the prefill's time went (<see cref="Diagnostics.RankProfileTable"/>): only for a job that asked
    /// for <see cref="CompletionJob.Timings"/>, on an engine that measures them, and a prefill that ran in one piece.
    /// </summary>
    public IReadOnlyList<Diagnostics.Profile>? PrefillProfiles { get; init; }
    /// <summary>Each generated token's logprobs, when the job's sampling asked for them (<see cref="SamplingOptions.Logprobs"/>); else null.</summary>
    public IReadOnlyList<TokenLogprob>? Logprobs { get; init; }
    public int TotalTokens => PromptTokens + CompletionTokens;
    public double PrefillTokensPerSecond => PromptTokens / Math.Max(PrefillTime.TotalSeconds, 1e-9);
    public double DecodeTokensPerSecond => Math.Max(CompletionTokens - 1, 0) / Math.Max(DecodeTime.TotalSeconds, 1e-9);
}
