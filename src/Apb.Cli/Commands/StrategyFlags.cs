using System.CommandLine;
using Apb.Backends;
using Apb.Engine;
using Apb.Strategies;
using Apb.Strategies.Apb;
using Apb.Runtime;

namespace Apb.Cli.Commands;

/// <summary>
/// The sequence-parallel flags `generate` and `logits` share, and the session they describe: full attention on one
/// rank by default, or a strategy over --ranks in-process ranks (each a thread with its own backend).
/// </summary>
sealed class StrategyFlags
{
    readonly Option<string?> _strategy = new("--strategy", "-s")
    {
        Description = "full | ring | zigzag | ulysses | star | apb | apb-balanced | auto (default: auto when --ranks is over 1 or under apb launch, full otherwise; auto picks full, apb or the zigzag ring per request, `apb inspect --context N --ranks H` says which and why)",
    };
    readonly Option<int?> _ranks = new("--ranks", "-r") { Description = "ranks to split the context over (default 1 for full, 4 otherwise)" };
    readonly Option<bool> _exact = new("--exact") { Description = "exact attention only: auto then picks full or the zigzag ring, never apb" };
    readonly Option<int?> _anchor = new("--anchor") { Description = AnchorHelp };
    readonly Option<int?> _passing = new("--passing") { Description = PassingHelp };
    readonly Option<int> _passingFrom = PassingFromLayerOption();
    readonly Option<int?> _passingBudget = PassingBudgetOption();
    readonly Option<string?> _scorer = new("--scorer") { Description = ScorerHelp };
    readonly Option<string?> _heads = new("--retaining-heads") { Description = HeadsHelp };
    readonly Option<float?> _novelty = NoveltyWeightOption();
    readonly Option<bool?> _anchorQuery = AnchorQueryOption();
    readonly Option<int> _fallback = new("--fallback-below")
    {
        Description = $"run star/apb as full attention on one rank below this many context tokens (0 = never; default {StrategyOptions.DefaultFallbackBelow})",
        DefaultValueFactory = _ => StrategyOptions.DefaultFallbackBelow,
    };
    readonly Option<bool> _timings = new("--timings") { Description = "print per-rank time by phase, bytes moved and attention FLOPs" };
    readonly Option<string?> _kvCache = KvCacheOption();
    readonly Option<string?> _prefillAttention = CommonOptions.PrefillAttention();

    /// <summary>--passing-from-layer (<see cref="StrategyOptions.PassingFromLayer"/>), as generate, serve and eval ruler take it.</summary>
    public static Option<int> PassingFromLayerOption() => new("--passing-from-layer")
    {
        Description = "APB passes nothing in the layers below this one (0, the default: every layer, as the paper does; on our model 1 lost 1-2.6 points of RULER, variable tracking needing layer 0's passed rows: docs/apb-algorithm.md 2.3)",
        DefaultValueFactory = _ => 0,
    };

    /// <summary>--passing-budget (<see cref="StrategyOptions.PassingBudget"/>), as generate, logits, serve and eval ruler take it.</summary>
    public static Option<int?> PassingBudgetOption() => new("--passing-budget")
    {
        Description = $"APB: the most passed rows per KV head a rank reads (default: {ApbDefaults.BudgetFactor} x l_p with the default --passing, none with a --passing given; " +
            "0: none, every rank reads every earlier selection whole, as the paper does); rank r reads the best " +
            "B/r rows of each earlier rank's selection, so a late rank reads about B however many ranks precede it (docs/apb-algorithm.md 2.8)",
    };

    public const string KvCacheHelp = "how the KV cache stores its rows: auto (the model's activation type, default) | fp8 (E4M3 with a scale per 32 values: " +
        "56% of bf16's bytes; every strategy; a GPU of compute capability 8.9 or later, or the CPU's reference, which computes with the same values)";

    /// <summary>--kv-cache-dtype, as generate, logits, serve and eval ruler take it (bench decode takes a list).</summary>
    public static Option<string?> KvCacheOption() => new("--kv-cache-dtype") { Description = KvCacheHelp };

    /// <summary>--anchor and --passing as generate, logits, serve and eval ruler take them: the defaults from ApbDefaults' rule.</summary>
    public static readonly string AnchorHelp =
        $"APB anchor length l_a in tokens (default: n/{ApbDefaults.AnchorDivisor}, the paper's table, capped at {ApbDefaults.MaxLength / 1024}K and " +
        "grown to hold the chat header and the query; see ApbDefaults)";
    public static readonly string PassingHelp =
        $"APB passing length l_p per rank and KV head (default: n/{ApbDefaults.PassingDivisor}, half the paper's n/64, capped at " +
        $"{ApbDefaults.MaxLength / 1024}K, at least {ApbDefaults.MinPassing} or the whole block; see ApbDefaults)";

    public const string ScorerHelp = "APB token scorer: auto (default: retaining when --retaining-heads is given or the model folder has " + ScorerChoice.HeadsFileName +
        ", query otherwise) | retaining (trained heads, follows chains) | retaining-only (the heads alone) | query (training-free, follows chains) | query-only (the query term alone)";
    public const string HeadsHelp = "safetensors file with the retaining heads (model.layers.{i}.self_attn.fc1/fc2.weight; default: " + ScorerChoice.HeadsFileName + " in the model folder, if there)";

    /// <summary>--novelty-weight, as every command with APB's scorer flags takes it (generate, logits, serve, eval ruler, bench prefill).</summary>
    public static Option<float?> NoveltyWeightOption() => new("--novelty-weight")
    {
        Description = "APB's novelty term's weight against the scorer's own score, both standardized: >= 0, 0 turns the term off " +
            $"(default {NoveltyTerm.WithHeads.ToString(System.Globalization.CultureInfo.InvariantCulture)} with the retaining heads, " +
            $"{NoveltyTerm.Weight.ToString(System.Globalization.CultureInfo.InvariantCulture)} with the query-aware scorer; the -only scorers have no term)",
        // The same number on every machine (no locale's decimal comma); the range is ScorerChoice.CheckNoveltyWeight's.
        CustomParser = a =>
        {
            string token = a.Tokens.Count == 1 ? a.Tokens[0].Value : "";
            if (float.TryParse(token, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out float w)) return w;
            a.AddError($"--novelty-weight takes a number >= 0 such as 0.5 (0 turns the novelty term off), got '{token}'");
            return null;
        },
    };

    /// <summary>--anchor-query, as generate, logits, serve and eval ruler take it.</summary>
    public static Option<bool?> AnchorQueryOption() => new("--anchor-query")
    {
        Description = "whether APB's anchor holds the query (default true, the paper's); false: the anchor is the plain context start, " +
            "the query is read only after the context, against every rank's cache (needs the retaining-heads scorer)",
    };

    /// <summary>--scorer and --retaining-heads resolved against the model folder (<see cref="ScorerChoice"/>).</summary>
    public static (ScorerKind Scorer, string? HeadsPath) Scorer(string? scorer, string? heads, string? modelDirectory) =>
        ScorerChoice.Resolve(ScorerChoice.Parse(scorer), heads, modelDirectory);

    public void AddTo(Command c)
    {
        foreach (var o in new Option[] { _strategy, _ranks, _exact, _anchor, _passing, _passingFrom, _passingBudget, _scorer, _heads, _novelty, _anchorQuery, _fallback, _timings, _kvCache, _prefillAttention }) c.Options.Add(o);
    }

    /// <summary>--prefill-attention (<see cref="CommonOptions.Fp8Attention"/>).</summary>
    public bool? Fp8Attention(ParseResult r) => CommonOptions.Fp8Attention(r.GetValue(_prefillAttention));

    /// <summary>", fp8 prefill attention" where it is in effect (<see cref="CommonOptions.Fp8AttentionInEffect"/>): for the lines that say how a run computes.</summary>
    public static string AttentionLabel(bool? fp8) => CommonOptions.Fp8AttentionInEffect(fp8) ? ", " + Backends.Qk8.Label : "";

    public bool Timings(ParseResult r) => r.GetValue(_timings);

    /// <summary>
    /// --strategy as given, else auto where there are several ranks (--ranks over 1, or the processes of apb launch) and
    /// full attention on one rank where there is one.
    /// </summary>
    public static StrategyKind DefaultStrategy(string? given, int? ranks) =>
        given is not null ? StrategyOptions.ParseStrategy(given)
        : (ranks ?? Runtime.Launch.LaunchEnvironment.Current?.WorldSize ?? 1) > 1 ? StrategyKind.Auto : StrategyKind.Full;

    /// <param name="modelDirectory">the checkpoint folder: its retaining heads, when it has some, are the default scorer</param>
    public StrategyOptions Options(ParseResult r, string modelDirectory, int anchorInsertAt, int padTokenId)
    {
        var kind = DefaultStrategy(r.GetValue(_strategy), r.GetValue(_ranks));
        var (scorer, heads) = Scorer(r.GetValue(_scorer), r.GetValue(_heads), modelDirectory);
        // Checked here too: full attention on one rank runs without a group, whose options are validated where it is made.
        ScorerChoice.CheckNoveltyWeight(scorer, r.GetValue(_novelty));
        return new StrategyOptions
        {
            Strategy = kind,
            // Under apb launch the ranks are the processes launched.
            Ranks = CommonOptions.RanksFor(kind, r.GetValue(_ranks)),
            Exact = r.GetValue(_exact),
            AnchorLength = r.GetValue(_anchor),
            PassingLength = r.GetValue(_passing),
            PassingFromLayer = r.GetValue(_passingFrom),
            PassingBudget = r.GetValue(_passingBudget),
            Scorer = scorer,
            NoveltyWeight = r.GetValue(_novelty),
            RetainingHeadsPath = heads,
            AnchorInsertAt = anchorInsertAt,
            AnchorQuery = r.GetValue(_anchorQuery) ?? true,
            FallbackBelow = r.GetValue(_fallback),
            PadTokenId = padTokenId,
            Timings = r.GetValue(_timings),
            KvCache = KvCacheDTypes.Parse(r.GetValue(_kvCache)),
        };
    }

    /// <summary>
    /// One rank with full attention runs as a plain local session; anything else as a request on a rank group made for
    /// it (in-process ranks, or one process per GPU under `apb launch`). Null on ranks 1.. of a launched group: they
    /// served rank 0's commands until it finished, and have nothing to report.
    /// </summary>
    public static IInferenceSession? Session(ModelBundle bundle, StrategyOptions o, Func<IBackend> backend, int capacity, int promptTokens)
    {
        if (Runtime.Launch.LaunchEnvironment.Current is { } launched)
        {
            var group = LaunchedRank.Group(bundle, o, launched, backend);
            if (!group.IsLeader)
            {
                using (group) group.Follow();
                return null;
            }
            return new GroupSession(group, o.AnchorInsertAt, capacity - promptTokens, ownsGroup: true);
        }
        if (o.Strategy == StrategyKind.Full && o.Ranks == 1 && !o.Timings)
            return new LocalSession(bundle.LoadModel(backend()), capacity, ownsBackend: true, o.KvCache);
        var g = RankGroup.Create(bundle.Config, o, _ => backend(), b => bundle.LoadWeights(b));
        return new GroupSession(g, o.AnchorInsertAt, capacity - promptTokens, ownsGroup: true);
    }

    public static void Report(Io io, IInferenceSession session, bool timings)
    {
        if (session is not GroupSession g) return;
        if (g.Note is { } note) io.Err.WriteLine(note);
        if (timings) io.Err.Write(g.FormatTimings());
    }
}
