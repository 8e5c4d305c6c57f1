using Apb.Backends;
using Apb.Engine;
using Apb.Tokenization;

namespace Apb.Serving;

/// <summary>
/// What a server or chat client needs to know about the model it runs: the name clients ask for, the tokenizer and
/// chat template, the context limit, the stop tokens, and how to make a session for one request.
/// </summary>
public sealed class ServedModel
{
    public ServedModel(string id, HfTokenizer tokenizer, int maxPositions, IEnumerable<int> stopTokens, SessionFactory newSession)
    {
        if (string.IsNullOrWhiteSpace(id)) throw new ApbException("the served model needs a non-empty name");
        if (maxPositions < 2) throw new ApbException($"max positions must be at least 2, got {maxPositions}");
        Id = id; Tokenizer = tokenizer; MaxPositions = maxPositions; NewSession = newSession;
        StopTokens = stopTokens.ToHashSet();
    }

    /// <summary>The model name of OpenAI's API ("model": ...), by default the checkpoint folder's name.</summary>
    public string Id { get; }
    public HfTokenizer Tokenizer { get; }
    /// <summary>max_position_embeddings: prompt plus generated tokens must fit.</summary>
    public int MaxPositions { get; }
    public IReadOnlySet<int> StopTokens { get; }
    public SessionFactory NewSession { get; }
    public DateTimeOffset Created { get; } = DateTimeOffset.UtcNow;

    /// <summary>
    /// Throws the ApbException a session from <see cref="NewSession"/> would fail with on this prompt (a sequence-parallel
    /// strategy's plan: ranks against tokens, the query against APB's anchor); null when every prompt that fits the
    /// context runs. <see cref="RequestPrompt"/> calls it before a request takes a run slot.
    /// </summary>
    public Action<PromptTokens>? CheckPrompt { get; init; }

    /// <summary>
    /// Single-rank exact attention over <paramref name="replicas"/> copies of the model, each on its own backend: a
    /// model's scratch buffers and a backend serve one forward at a time, so each concurrent request needs its own.
    /// On the CPU the copies share the memory-mapped weights.
    /// </summary>
    public static ServedModel Local(ModelBundle bundle, Func<IBackend> newBackend, int replicas = 1, string? id = null)
    {
        var pool = new ModelReplicas(Enumerable.Range(0, replicas).Select(_ => bundle.LoadModel(newBackend())));
        return new ServedModel(id ?? DefaultId(bundle.Directory), bundle.Tokenizer, bundle.Config.MaxPositionEmbeddings,
            bundle.StopTokens, pool.NewSession);
    }

    public static string DefaultId(string modelDirectory) =>
        Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelDirectory)));
}
