using Apb.Engine;

namespace Apb.Serving;

/// <summary>
/// What runs the completions a server or chat client receives: <see cref="BatchScheduler"/> (continuous batching on a
/// rank group: the engine `apb serve` runs), or <see cref="SessionEngine"/> (one session per request, for sessions made
/// elsewhere). The caller admits requests (<see cref="RequestQueue"/>) before it hands them here.
/// </summary>
public interface IGenerationEngine : IDisposable
{
    /// <summary>The most positions (prompt plus completion) one request may take.</summary>
    int MaxModelLength { get; }

    /// <summary>
    /// Throws <see cref="InvalidRequestException"/> for a request that could never run here (too long, too big for
    /// memory, a shape the strategy cannot run), before it waits in line. <paramref name="maxNewTokens"/> 0: the prompt alone.
    /// </summary>
    void Check(PromptTokens prompt, int maxNewTokens);

    /// <summary>Runs one completion, streaming its text through <paramref name="onText"/>; cancelled when the client goes.</summary>
    Task<CompletionResult> RunAsync(CompletionJob job, Action<string>? onText, CancellationToken cancel);

    /// <summary>What the engine holds now, for /metrics.</summary>
    EngineLoad Load { get; }
}

/// <summary>
/// An engine's load: sequences generating and waiting inside it, KV-cache and activation bytes reserved on its busiest
/// rank and its budget (0 where memory is not tracked), counters of prompt tokens, generated tokens and decode steps,
/// and the KV-cache bytes of the rows cached now on each rank, rank 0 first (empty where the engine does not know).
/// </summary>
public readonly record struct EngineLoad(int Running, int Waiting, long ReservedBytes, long BudgetBytes, long PromptTokens,
    long GeneratedTokens, long DecodeSteps, IReadOnlyList<long> KvBytesPerRank)
{
    /// <summary>
    /// What each rank last said it holds (sequences, KV-cache bytes, device memory), rank 0 first; null where the
    /// engine does not ask its ranks. Asked when the engine goes idle and about once a second while it works: where
    /// it disagrees with <see cref="KvBytesPerRank"/> once the engine is idle, a rank kept memory it should have freed.
    /// </summary>
    public IReadOnlyList<Runtime.RankMemoryUse>? Ranks { get; init; }
}
