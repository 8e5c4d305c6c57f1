using System.Globalization;

namespace Apb.Strategies;

/// <summary>
/// Which scorer APB runs with, the one home of the rule every command follows (generate, logits, serve, eval, bench,
/// the demo): a scorer named with --scorer is kept; under auto (the default) the trained retaining heads mixed with the
/// novelty term when there are heads (a file given with --retaining-heads, or <see cref="HeadsFileName"/> in the model
/// folder), and the training-free query-aware scorer (with the same term) when there are none. The heads are the default
/// because the issue that made this rule (#24) measured them ahead where information must flow between blocks (variable
/// tracking at 16K on a GPU: 95.0 against the query-only scorer's 71.0 and full's 100, bench/results/accuracy-20261128).
/// The novelty term joined them because alone they lost the later links of a chain at short lengths: at 4K on the CPU
/// (10 samples, bench/results/scorer-cpu-20261203-defaults) vt 86.0 alone, 98.0 mixed (weight 0.5), full 100.
/// bench/gpu/scorer.sh measures the defaults, the heads alone and the query-aware scorer at 4K and 16K on the same samples.
/// </summary>
public static class ScorerChoice
{
    /// <summary>The retaining heads' file name in a model folder, where a checkpoint ships them.</summary>
    public const string HeadsFileName = "retaining_heads.safetensors";

    /// <summary>The names --scorer takes, as help and errors list them.</summary>
    public const string Names = "auto, retaining, retaining-only, query or query-only";

    /// <summary>
    /// The novelty term's weight in the scorer: <paramref name="given"/> (--novelty-weight) when there is one, else the
    /// scorer's own (<see cref="Apb.NoveltyTerm.Weight"/> against the query term, <see cref="Apb.NoveltyTerm.WithHeads"/>
    /// against the heads); 0 in the scorers without the term.
    /// </summary>
    public static float NoveltyWeight(ScorerKind scorer, float? given = null) => scorer switch
    {
        ScorerKind.Query => given ?? Apb.NoveltyTerm.Weight,
        ScorerKind.Retaining => given ?? Apb.NoveltyTerm.WithHeads,
        _ => 0f,
    };

    /// <summary>Whether the scorer mixes in the novelty term (the -only scorers are the ones without it).</summary>
    public static bool HasNoveltyTerm(this ScorerKind scorer) => scorer is ScorerKind.Query or ScorerKind.Retaining;

    /// <summary>
    /// --novelty-weight against the scorer it would weigh in: finite and at least 0 (0 turns the term off, the scorer is
    /// then the query term or the heads alone), and only for a scorer that has the term. Null (not given) always passes.
    /// </summary>
    public static void CheckNoveltyWeight(ScorerKind scorer, float? weight)
    {
        if (weight is not float w) return;
        if (!float.IsFinite(w) || w < 0)
            throw new ApbException($"--novelty-weight must be a finite number >= 0 (0 turns the novelty term off), got {w.ToString(CultureInfo.InvariantCulture)}: " +
                $"use e.g. --novelty-weight {Apb.NoveltyTerm.WithHeads.ToString(CultureInfo.InvariantCulture)}, or drop it for the scorer's default");
        if (!scorer.HasNoveltyTerm())
            throw new ApbException($"--novelty-weight weighs the novelty term, but --scorer {Name(scorer)} has none: " +
                $"use --scorer {(scorer == ScorerKind.RetainingOnly ? "retaining" : "query")} with --novelty-weight (0 is the same as {Name(scorer)}), or drop --novelty-weight");
    }

    /// <summary>Whether the scorer reads the retaining heads (the group loads them, the plan needs no query to score).</summary>
    public static bool UsesHeads(this ScorerKind scorer) => scorer is ScorerKind.Retaining or ScorerKind.RetainingOnly;

    /// <summary>--scorer's value: a scorer, or null for auto (the default).</summary>
    public static ScorerKind? Parse(string? name) => name?.Trim().ToLowerInvariant() switch
    {
        null or "auto" => null,
        "query" or "query-aware" => ScorerKind.Query,
        "retaining" or "retaining-heads" => ScorerKind.Retaining,
        "retaining-only" => ScorerKind.RetainingOnly,
        "query-only" => ScorerKind.QueryOnly,
        _ => throw new ApbException($"unknown scorer '{name}': expected {Names}"),
    };

    /// <param name="requested">the scorer asked for (--scorer), or null for auto</param>
    /// <param name="headsFile">--retaining-heads, or null</param>
    /// <param name="modelDirectory">the checkpoint folder, or null (random weights have no heads)</param>
    public static (ScorerKind Scorer, string? HeadsPath) Resolve(ScorerKind? requested, string? headsFile, string? modelDirectory)
    {
        string? inFolder = modelDirectory is null ? null : Path.Combine(modelDirectory, HeadsFileName);
        if (inFolder != null && !File.Exists(inFolder)) inFolder = null;
        switch (requested)
        {
            case ScorerKind.Query or ScorerKind.QueryOnly when headsFile != null:
                throw new ApbException($"--retaining-heads {headsFile} is read only by the retaining-heads scorer, but --scorer {Name(requested.Value)} was given: drop one of the two");
            case ScorerKind.Query or ScorerKind.QueryOnly:
                return (requested.Value, null);
            case ScorerKind.Retaining or ScorerKind.RetainingOnly:
                return (requested.Value, headsFile ?? inFolder ?? throw new ApbException(
                    $"--scorer {Name(requested.Value)} needs the retaining heads: pass --retaining-heads FILE (a safetensors file with model.layers.{{i}}.self_attn.fc1.weight and fc2.weight), " +
                    $"put {HeadsFileName} in the model folder{(modelDirectory is null ? "" : $" ({modelDirectory})")}, or use --scorer query, which needs no training"));
            default:
                return (headsFile ?? inFolder) is string path ? (ScorerKind.Retaining, path) : (ScorerKind.Query, null);
        }
    }

    /// <summary>
    /// The scorer as tables, banners and plans name it, with the novelty term's weight when one was given that is not
    /// the scorer's own ("retaining heads, novelty weight 0.25").
    /// </summary>
    public static string Label(ScorerKind scorer, float? noveltyWeight = null) => scorer switch
    {
        ScorerKind.Retaining => "retaining heads",
        ScorerKind.QueryOnly => "query-only scorer",
        ScorerKind.RetainingOnly => "retaining heads only",
        _ => "query-aware scorer",
    } + (noveltyWeight is float w && scorer.HasNoveltyTerm() && w != NoveltyWeight(scorer)
        ? $", novelty weight {w.ToString(CultureInfo.InvariantCulture)}" : "");

    static string Name(ScorerKind scorer) => scorer switch
    {
        ScorerKind.QueryOnly => "query-only",
        ScorerKind.RetainingOnly => "retaining-only",
        _ => scorer.ToString().ToLowerInvariant(),
    };
}
