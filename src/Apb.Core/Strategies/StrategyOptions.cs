using Apb.Backends;
using Apb.Checkpoints;
using Apb.Comms;

namespace Apb.Strategies;

/// <summary>What a distributed session runs: the strategy, its rank count and APB's lengths.</summary>
public sealed record StrategyOptions
{
    /// <summary>
    /// Contexts shorter than this run APB and Star as full attention on one rank, where splitting costs more than it saves.
    /// 32K is where the paper's length table starts (docs/apb-algorithm.md, 2.5); at 32K, APB on two H200s already took
    /// 0.49 of full attention's time (bench/results/prefill-20261128-152251); shorter contexts have not been measured.
    /// </summary>
    public const int DefaultFallbackBelow = 32 * 1024;

    /// <summary>
    /// Most ranks a strategy runs on: every rank holds its own activations and KV caches (in process also a thread and a
    /// backend), so ranks past the devices at hand only cost memory. 64 is eight nodes of eight GPUs.
    /// </summary>
    public const int MaxRanks = 64;

    public StrategyKind Strategy { get; init; } = StrategyKind.Full;
    public int Ranks { get; init; } = 1;
    /// <summary>l_a; null picks <see cref="ApbDefaults"/> by context length.</summary>
    public int? AnchorLength { get; init; }
    /// <summary>l_p; null picks <see cref="ApbDefaults"/> by context length.</summary>
    public int? PassingLength { get; init; }
    public ScorerKind Scorer { get; init; } = ScorerKind.Query;
    /// <summary>
    /// The novelty term's weight in APB's scorer against the query term or the retaining heads (both standardized; 0
    /// turns the term off); null: the scorer's own (<see cref="ScorerChoice.NoveltyWeight"/>).
    /// </summary>
    public float? NoveltyWeight { get; init; }
    /// <summary>
    /// APB passes nothing in the layers below this one (0, the default: every layer, as the paper does). Why offer it: on
    /// the embedded model the passed rows move layer 0's attention output by 62-100 % of its size against 12-23 % without
    /// them, while in the later layers they bring it closer to full attention's (`apb eval coverage`,
    /// bench/results/apb-coverage-cpu-20261205). Why it is not the default: 1 cost 1.1 to 2.6 points of the RULER mean
    /// at 32K and 64K on 4 and 8 ranks, 20 to 26 of variable tracking, which needs the rows layer 0 passes
    /// (bench/results/apb-passing-gpu-20261205).
    /// </summary>
    public int PassingFromLayer { get; init; }
    /// <summary>
    /// B: the most passed rows per KV head an APB rank (a chunk, for balanced APB) reads; rank r reads the best
    /// floor(B / r) of each earlier rank's selection (<see cref="SequencePlan.PassingBudget"/>, docs/apb-algorithm.md
    /// 2.8). Null: with the default l_p, <see cref="ApbDefaults.Budget"/> (twice l_p), with an l_p given by hand none;
    /// 0: no budget, every earlier rank's whole selection, as the paper does.
    /// </summary>
    public int? PassingBudget { get; init; }
    /// <summary>Exact attention only: <see cref="StrategyKind.Auto"/> then chooses between full and the zigzag ring.</summary>
    public bool Exact { get; init; }
    /// <summary>safetensors file with model.layers.{i}.self_attn.fc1.weight / fc2.weight, for <see cref="ScorerKind.Retaining"/>.</summary>
    public string? RetainingHeadsPath { get; init; }
    /// <summary>Context tokens before the query in APB's anchor: the chat template's header (e.g. 16 for Llama-3, 24 for Qwen-2.5, 0 for base models).</summary>
    public int AnchorInsertAt { get; init; }
    /// <summary>
    /// Whether APB's anchor holds the query (the paper's design, the default). False (--anchor-query false): the anchor is
    /// the plain context start at its own positions, as Star's is, and the query is seen only where it always runs, after
    /// the context against every rank's cache (docs/apb-algorithm.md, 2.2). The query-aware scorer reads the query from
    /// the anchor, so it needs true.
    /// </summary>
    public bool AnchorQuery { get; init; } = true;
    /// <summary>APB and Star run as full attention on one rank below this many context tokens (0: never).</summary>
    public int FallbackBelow { get; init; } = DefaultFallbackBelow;
    /// <summary>Token id of the pad rows that round the context up to a multiple of the rank count (never seen by real tokens).</summary>
    public int PadTokenId { get; init; }
    /// <summary>
    /// How the KV caches store their rows (--kv-cache-dtype): every rank's, for every strategy (the sequence-parallel
    /// ones cache their own blocks and read them in the star phase).
    /// </summary>
    public KvCacheDType KvCache { get; init; }

    /// <summary>Per-rank time by phase (synchronizes the backend at phase edges).</summary>
    public bool Timings { get; init; }
    /// <summary>Longest a rank waits in one collective before it fails naming the ranks it waited for.</summary>
    public TimeSpan CollectiveTimeout { get; init; } = InProcessGroup.DefaultTimeout;
    /// <summary>
    /// Overlap transfers with the compute that does not need them (ring/zigzag: the next K/V block travels during the
    /// current block's attention; APB: the passing all-gather during the anchor rows' attention). False restores the
    /// serialized schedule (each transfer completes as soon as it starts), to measure what overlap buys; results are
    /// identical. Default: <see cref="OverlapFromEnvironment"/>.
    /// </summary>
    public bool Overlap { get; init; } = OverlapFromEnvironment;

    /// <summary>APB_OVERLAP, read once per process: 0, false, off or no turns overlap off; unset or anything else leaves it on.</summary>
    public static readonly bool OverlapFromEnvironment = ParseOverlap(Environment.GetEnvironmentVariable("APB_OVERLAP"));

    public static bool ParseOverlap(string? value) =>
        value?.Trim().ToLowerInvariant() is not ("0" or "false" or "off" or "no");

    /// <summary>
    /// "full", "ring x4", "apb x4 (retaining heads)": the strategy as banners print it, APB with its scorer (and the
    /// novelty term's weight when it is not the scorer's own).
    /// </summary>
    public string Describe() => Strategy.Name() + (Strategy == StrategyKind.Full && Ranks == 1 ? "" : $" x{Ranks}") +
        (Exact ? ", exact" : Strategy.MayRunApb() ? $" ({ApbLabel(Scorer, NoveltyWeight, AnchorQuery, PassingFromLayer, PassingBudget)})" : "") +
        (KvCache == KvCacheDType.Auto ? "" : $", {KvCache.Name()} KV cache");

    /// <summary>
    /// How banners, plans, tables and result files name APB's settings: the scorer (<see cref="ScorerChoice.Label"/>),
    /// then "query-free anchor" where the anchor holds no query, "passing from layer N" where layers below N pass nothing,
    /// and a passing budget given by hand ("passing budget B", or "no passing budget" for 0; the default, twice l_p, is
    /// not named).
    /// </summary>
    public static string ApbLabel(ScorerKind scorer, float? noveltyWeight, bool anchorQuery, int passingFromLayer = 0, int? passingBudget = null) =>
        ScorerChoice.Label(scorer, noveltyWeight) + (anchorQuery ? "" : ", query-free anchor") +
        (passingFromLayer > 0 ? $", passing from layer {passingFromLayer}" : "") + BudgetLabel(passingBudget);

    /// <summary>", passing budget B" for a budget (given by hand, or a plan's), ", no passing budget" for 0, nothing for null (the default, not yet resolved).</summary>
    public static string BudgetLabel(int? given) => given switch { null => "", 0 => ", no passing budget", int b => $", passing budget {b}" };

    /// <summary>A passing budget is a count of rows, 0 for none, and only APB passes rows.</summary>
    public static void CheckPassingBudget(int? given, StrategyKind strategy)
    {
        if (given is null) return;
        SequencePlan.CheckPassingBudget(given.Value);
        if (!strategy.MayRunApb())
            throw new ApbException($"--passing-budget sets how many rows APB passes, but {strategy.Name()} passes none: drop --passing-budget, or use --strategy apb, apb-balanced or auto");
    }

    /// <summary>The same for a command that runs a list of strategies (eval ruler, bench prefill): one of them must be APB.</summary>
    public static void CheckPassingBudget(int? given, IReadOnlyCollection<StrategyKind> strategies)
    {
        if (given is null) return;
        SequencePlan.CheckPassingBudget(given.Value);
        if (!strategies.Any(s => s.IsApb()))
            throw new ApbException($"--passing-budget sets how many rows APB passes, but --strategies {string.Join(',', strategies.Select(s => s.Name()))} runs no APB: add apb or apb-balanced, or drop --passing-budget");
    }

    /// <summary><see cref="PassingFromLayer"/> must name one of the model's layers, or the count (no passing at all).</summary>
    public static void CheckPassingFromLayer(int layer, ModelConfig config)
    {
        if (layer < 0 || layer > config.NumHiddenLayers)
            throw new ApbException($"--passing-from-layer {layer} is outside 0..{config.NumHiddenLayers} (the model's layers): 0 passes in every layer, {config.NumHiddenLayers} in none");
    }

    /// <summary>Refuses an anchor without the query for a scorer that reads the query there (the query-aware ones).</summary>
    public static void CheckAnchorQuery(ScorerKind scorer, bool anchorQuery)
    {
        if (!anchorQuery && !scorer.UsesHeads())
            throw new ApbException("--anchor-query false leaves the query out of APB's anchor, but the query-aware scorer reads it there: " +
                "use --scorer retaining (the model's retaining heads), or drop --anchor-query false");
    }

    public static StrategyKind ParseStrategy(string name) => name.ToLowerInvariant() switch
    {
        "full" => StrategyKind.Full,
        "ring" => StrategyKind.Ring,
        "zigzag" or "zigzag-ring" or "zigzag_ring" => StrategyKind.Zigzag,
        "ulysses" => StrategyKind.Ulysses,
        "star" => StrategyKind.Star,
        "apb" => StrategyKind.Apb,
        "apb-balanced" or "apb_balanced" => StrategyKind.ApbBalanced,
        "auto" => StrategyKind.Auto,
        _ => throw new ApbException($"unknown strategy '{name}': expected full, ring, zigzag, ulysses, star, apb, apb-balanced or auto"),
    };

    /// <summary>
    /// Why Ulysses cannot run on <paramref name="ranks"/> ranks, or null: it shards attention heads over the ranks, and a
    /// GQA group must stay whole, so the rank count must divide the KV heads.
    /// </summary>
    public static string? UlyssesProblem(int kvHeads, int ranks) => kvHeads % ranks == 0 ? null
        : $"ulysses shards attention heads over ranks, so the rank count must divide the KV heads: use --ranks N where N divides num_key_value_heads={kvHeads}, or choose ring/zigzag";

    /// <summary>
    /// Why the sequence-parallel strategies cannot run this model, or null. They split a sequence over ranks and pass
    /// whole blocks of keys: a sliding window (Mistral) would need every block, the passing and the star phase to hide
    /// keys by distance, and dynamic-NTK RoPE takes its frequencies from the length of each forward call, which a split
    /// prefill does not have. Neither is implemented there; full attention runs both exactly.
    /// </summary>
    public static string? SequenceParallelProblem(ModelConfig config) =>
        config.SlidingWindow is int w
            ? $"{config.Architecture} uses a sliding window of {w} tokens (sliding_window in config.json), which the sequence-parallel strategies do not implement: use --strategy full (exact, one rank)"
        : config.Rope.Type == RopeType.Dynamic
            ? "the model's rope_type is dynamic (NTK), whose frequencies depend on each forward call's length, which the sequence-parallel strategies do not implement: use --strategy full (exact, one rank)"
        : null;

    /// <summary>Checks what does not depend on the request: rank count against the model, files, lengths' signs.</summary>
    public void Validate(ModelConfig config)
    {
        if (Ranks < 1) throw new ApbException($"--ranks must be at least 1, got {Ranks}");
        if (Ranks > MaxRanks)
            throw new ApbException($"--ranks {Ranks} is more than {MaxRanks}: every rank holds its own activations and KV cache, so ranks beyond the GPUs at hand only cost memory; use one rank per GPU ({MaxRanks} at most)");
        if (Strategy == StrategyKind.Full && Ranks != 1)
            throw new ApbException($"strategy full runs on one rank, but --ranks {Ranks} was given: drop --ranks or choose ring, zigzag, ulysses, star, apb, apb-balanced or auto");
        if (Strategy == StrategyKind.Ulysses && UlyssesProblem(config.NumKeyValueHeads, Ranks) is { } why) throw new ApbException(why);
        if (Strategy != StrategyKind.Full && SequenceParallelProblem(config) is { } model) throw new ApbException(model);
        if (AnchorLength < 0) throw new ApbException($"--anchor must be >= 0, got {AnchorLength}");
        if (PassingLength < 0) throw new ApbException($"--passing must be >= 0, got {PassingLength}");
        CheckPassingFromLayer(PassingFromLayer, config);
        CheckPassingBudget(PassingBudget, Strategy);
        if (AnchorInsertAt < 0) throw new ApbException($"anchor insert position must be >= 0, got {AnchorInsertAt}");
        if ((uint)PadTokenId >= (uint)config.VocabSize)
            throw new ApbException($"pad token id {PadTokenId} is outside the vocabulary (0..{config.VocabSize - 1})");
        if (Exact && Strategy is StrategyKind.Star or StrategyKind.Apb or StrategyKind.ApbBalanced)
            throw new ApbException($"--exact asks for exact attention, but {Strategy.Name()} is approximate: drop --exact, or use --strategy auto (full or the zigzag ring), full, ring, zigzag or ulysses");
        ScorerChoice.CheckNoveltyWeight(Scorer, NoveltyWeight);
        if (Strategy.MayRunApb()) CheckAnchorQuery(Scorer, AnchorQuery);
        if (Strategy.MayRunApb() && Scorer.UsesHeads() && string.IsNullOrEmpty(RetainingHeadsPath))
            throw new ApbException("--scorer retaining needs --retaining-heads FILE (a safetensors file with model.layers.{i}.self_attn.fc1.weight and fc2.weight); or use --scorer query, which needs no training");
    }
}
