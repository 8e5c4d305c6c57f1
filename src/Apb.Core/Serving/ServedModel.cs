using Apb.Backends;
using Apb.Engine;
using Apb.Model;
using Apb.Runtime;
using Apb.Strategies;
using Apb.Tokenization;

namespace Apb.Serving;

/// <summary>
/// What a server or chat client needs to know about the model it runs: the name clients ask for, the tokenizer and
/// chat template, the stop tokens, and the engine that runs its completions (whose length limit is the context a
/// request may use). Disposing it disposes an engine it owns (made by <see cref="Local"/>).
/// </summary>
public sealed class ServedModel : IDisposable
{
    readonly IDisposable? _owned;

    public ServedModel(string id, HfTokenizer tokenizer, IEnumerable<int> stopTokens, IGenerationEngine engine, IDisposable? owned = null)
    {
        if (string.IsNullOrWhiteSpace(id)) throw new ApbException("the served model needs a non-empty name");
        Id = id; Tokenizer = tokenizer; Engine = engine; _owned = owned;
        StopTokens = stopTokens.ToHashSet();
    }

    /// <summary>A session per request (no batching), for sessions made outside the rank groups.</summary>
    public ServedModel(string id, HfTokenizer tokenizer, int maxPositions, IEnumerable<int> stopTokens, SessionFactory newSession,
        Action<PromptTokens>? checkPrompt = null)
        : this(id, tokenizer, stopTokens, new SessionEngine(newSession, tokenizer, stopTokens.ToHashSet(), maxPositions, checkPrompt)) { }

    /// <summary>The model name of OpenAI's API ("model": ...), by default the checkpoint folder's name.</summary>
    public string Id { get; }
    public HfTokenizer Tokenizer { get; }
    public IGenerationEngine Engine { get; }
    /// <summary>Prompt plus generated tokens must fit in this many positions (the engine's limit: --max-model-len).</summary>
    public int MaxPositions => Engine.MaxModelLength;
    public IReadOnlySet<int> StopTokens { get; }
    public DateTimeOffset Created { get; } = DateTimeOffset.UtcNow;
    /// <summary>How requests run (strategy and ranks, as apb serve's banner says it), for /v1/models and the page; null: not said.</summary>
    public string? Strategy { get; init; }

    /// <summary>The same model and engine with another tokenizer (a chat template given on the command line).</summary>
    public ServedModel WithTokenizer(HfTokenizer tokenizer) => new(Id, tokenizer, StopTokens, Engine) { Strategy = Strategy };

    /// <summary>
    /// Exact attention on one rank of this process (the CPU, or one GPU) with continuous batching of up to
    /// <paramref name="maxBatch"/> requests: a rank group of one and its <see cref="BatchScheduler"/>, owned by the result.
    /// </summary>
    public static ServedModel Local(ModelBundle bundle, Func<IBackend> newBackend, int maxBatch = 1, string? id = null)
    {
        var group = RankGroup.Create(bundle.Config, new StrategyOptions(), _ => newBackend(), bundle.LoadWeights);
        try
        {
            var scheduler = new BatchScheduler(group, bundle.Tokenizer, bundle.StopTokens.ToHashSet(), new SchedulerOptions { MaxBatch = maxBatch });
            return new ServedModel(id ?? DefaultId(bundle.Directory), bundle.Tokenizer, bundle.StopTokens, scheduler, new Owned(scheduler, group));
        }
        catch
        {
            group.Dispose();
            throw;
        }
    }

    sealed class Owned(IDisposable first, IDisposable second) : IDisposable
    {
        public void Dispose() { first.Dispose(); second.Dispose(); }
    }

    public static string DefaultId(string modelDirectory) =>
        Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelDirectory)));

    public void Dispose() => _owned?.Dispose();
}
