using Apb.Backends;
using System.CommandLine;
using Apb.Checkpoints;
using Apb.Engine;
using Apb.Strategies;
using Apb.Strategies.Apb;

namespace Apb.Cli.Commands;

/// <summary>`apb inspect`: what a checkpoint is and what it needs, without running it.</summary>
static class InspectCommand
{
    static readonly StrategyKind[] Strategies =
        [StrategyKind.Full, StrategyKind.Ring, StrategyKind.Zigzag, StrategyKind.Ulysses, StrategyKind.Star, StrategyKind.Apb, StrategyKind.ApbBalanced];
    static readonly int[] RankCounts = [1, 2, 4, 8];
    const int MaxRanks = 1024;

    public static Command Create(Io io)
    {
        var model = new ModelFlags();
        var context = new Option<string?>("--context", "-c", "--length")
        {
            Description = "also print the GPU memory each strategy needs per rank at this context length (e.g. 128k), and the fewest H200s that hold it",
        };
        var query = new Option<int>("--query") { Description = "query tokens after the context, for --context (as bench prefill's --query)", DefaultValueFactory = _ => 64 };
        var ranks = new Option<int?>("--ranks", "-r", "--gpus")
        {
            Description = "with --context: also each rank's attention work under contiguous and balanced APB on this many ranks, and what --strategy auto picks and why",
        };
        var budget = StrategyFlags.PassingBudgetOption();
        budget.Description = $"with --ranks: APB's passing budget in the work table (the most passed rows a rank reads; default {ApbDefaults.BudgetFactor} x the default l_p; 0: none; docs/apb-algorithm.md 2.8)";
        var kvCache = StrategyFlags.KvCacheOption();
        kvCache.Description = "with --context: count the KV caches in the per-rank table as this dtype stores them (auto = bf16 on a GPU, default; fp8)";
        var cmd = new Command("inspect", "print a model's shape, dtypes, parameter count, tokenizer and memory needs") { context, query, ranks, budget, kvCache };
        model.AddTo(cmd);
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            int? n = r.GetValue(context) is { } spec ? Eval.SampleGenerator.ParseLengths(spec, "--context") is [var one] ? one
                : throw new ApbException($"--context '{spec}' names several lengths: give one, e.g. 128k") : null;
            int q = r.GetValue(query);
            if (q < 1) throw new ApbException($"--query must be at least 1, got {q}");
            int? h = r.GetValue(ranks);
            if (h is not null && n is null) throw new ApbException("--ranks needs --context: the work per rank depends on the context length (e.g. --context 128k --ranks 8)");
            var kv = KvCacheDTypes.Parse(r.GetValue(kvCache));
            if (r.GetValue(kvCache) is not null && n is null)
                throw new ApbException("--kv-cache-dtype needs --context: it changes the per-rank memory table, which depends on the context length (e.g. --context 128k --kv-cache-dtype fp8)");
            int? passingBudget = r.GetValue(budget);
            StrategyOptions.CheckPassingBudget(passingBudget, StrategyKind.Apb);
            if (passingBudget is not null && h is null)
                throw new ApbException("--passing-budget needs --ranks and --context: it changes the work per rank (e.g. --context 64k --ranks 8 --passing-budget 1024)");
            if (h is < 2 or > StrategyOptions.MaxRanks)
                throw new ApbException($"--ranks {h} for the work per rank: give 2 to {StrategyOptions.MaxRanks} ranks");
            using var b = ModelBundle.Open(CommonOptions.ResolveModel(model.Get(r)));
            var c = b.Config;
            // Every tensor checked against config.json as loading checks it (names, shapes, dtypes, nothing left over),
            // so inspect never describes a checkpoint that generate would refuse. The CPU backend reads weights in
            // place: this maps nothing new and copies nothing.
            using (var cpu = new Backends.Cpu.CpuBackend()) Model.LlamaWeights.Load(c, b.Checkpoint, cpu);
            var tensors = b.Checkpoint.Tensors.ToList();
            long bytes = tensors.Sum(t => t.End - t.Begin);
            long elements = tensors.Sum(t => t.ElementCount);
            var dtypes = tensors.GroupBy(t => DTypes.Name(t.DType)).Select(g => $"{g.Key} x{g.Count()}");
            long kvPerToken = 2L * c.NumHiddenLayers * c.KvDim;
            var o = io.Out;
            o.WriteLine($"model          {Path.GetFullPath(b.Directory)}");
            o.WriteLine($"architecture   {c.Architecture} ({c.TorchDtype})");
            o.WriteLine($"layers         {c.NumHiddenLayers}, hidden {c.HiddenSize}, intermediate {c.IntermediateSize}");
            o.WriteLine($"attention      {c.NumAttentionHeads} heads, {c.NumKeyValueHeads} kv heads, head_dim {c.HeadDim}{(c.QkvBias ? ", qkv bias" : "")}" +
                $"{(c.QkNorm ? ", q/k norm" : "")}{(c.SlidingWindow is int w ? $", sliding window {w}" : "")}");
            o.WriteLine($"rope           {Rope(c.Rope)}; max positions {c.MaxPositionEmbeddings}");
            o.WriteLine($"vocab          {c.VocabSize}{(c.TieWordEmbeddings ? ", tied embeddings" : "")}");
            o.WriteLine($"parameters     {elements:N0} in {tensors.Count} tensors ({string.Join(", ", dtypes)}); config implies {c.ParameterCount:N0}");
            o.WriteLine($"weights        {Size(bytes)} in {b.Checkpoint.Files.Count} file(s), memory-mapped");
            o.WriteLine($"kv cache       {Size(kvPerToken * 4 * 1024)} per 1K tokens in fp32 (CPU), {Size(kvPerToken * 2 * 1024)} in bf16");
            o.WriteLine($"tokenizer      {b.Tokenizer.Kind}");
            o.WriteLine($"chat template  {b.Tokenizer.ChatTemplate.Name}");
            o.WriteLine($"stop tokens    {string.Join(", ", b.StopTokens)}");
            if (n is int length) Memory(o, c, length, q, kv);
            if (n is int len && h is int rankCount) Work(o, len, q, rankCount, passingBudget);
            return 0;
        }));
        return cmd;
    }

    static string Rope(RopeConfig r) => r.Type switch
    {
        RopeType.Default => $"default, theta {r.Theta}",
        RopeType.Linear => $"linear, theta {r.Theta}, factor {r.Factor}",
        RopeType.Llama3 => $"llama3, theta {r.Theta}, factor {r.Factor}, original {r.OriginalMaxPositions}",
        RopeType.Dynamic => $"dynamic (NTK), theta {r.Theta}, factor {r.Factor}, scaled past {r.OriginalMaxPositions}",
        RopeType.Yarn => $"yarn, theta {r.Theta}, factor {r.Factor}, original {r.OriginalMaxPositions}, attention factor {r.AttentionFactor:G4}",
        _ => r.Type.ToString(),
    };

    /// <summary>
    /// Per strategy and rank count, the bytes one GPU needs (<see cref="RankMemory"/>: bf16 weights on every rank plus
    /// the rank's share of the sequence), and the fewest ranks at which that fits an H200.
    /// </summary>
    static void Memory(TextWriter o, ModelConfig c, int n, int q, KvCacheDType kv)
    {
        o.WriteLine();
        o.WriteLine($"GPU memory for a prefill of {n:N0} context + {q} query tokens (CUDA backend, bf16 weights and activations, {(kv == KvCacheDType.Fp8 ? "fp8" : "bf16")} KV cache; fits = at most " +
            $"{RankMemory.UsableFraction * 100:F0}% of an H200's {RankMemory.H200Bytes / 1e9:F0} GB):");
        o.WriteLine($"  weights per GPU  {Size(RankMemory.WeightBytes(c))} (every strategy holds the whole model on every rank)");
        o.WriteLine($"  kv cache         {Size(RankMemory.KvBytesPerToken(c))} per token, {Size(RankMemory.KvBytesPerToken(c) * (n + (long)q))} for the whole sequence; " +
                    $"with --kv-cache-dtype fp8 {Size(RankMemory.KvBytesPerToken(c, KvCacheDType.Fp8))} and {Size(RankMemory.KvBytesPerToken(c, KvCacheDType.Fp8) * (n + (long)q))}");
        if ((long)n + q > c.MaxPositionEmbeddings)
            o.WriteLine($"  note             {n + (long)q:N0} tokens exceed max_position_embeddings {c.MaxPositionEmbeddings}: the model refuses such prompts");
        o.WriteLine($"  {"strategy",-13}{string.Concat(RankCounts.Select(h => $"{$"{h} GPU{(h > 1 ? "s" : "")}",12}"))}   fewest H200s");
        foreach (var s in Strategies)
        {
            string Cell(int ranks) => (s != StrategyKind.Full && ranks == 1) || RankMemory.Unrunnable(c, s, ranks) is not null
                ? "-" : Size(RankMemory.PerRank(c, s, n, q, ranks, kv));
            o.WriteLine($"  {s.Name(),-13}{string.Concat(RankCounts.Select(h => $"{Cell(h),12}"))}   {Fewest(c, s, n, q, kv)}");
        }
        o.WriteLine("  (-: not a way to run it: full attention runs on one rank, the others on two or more, Ulysses on rank counts that divide the KV heads" +
            (StrategyOptions.SequenceParallelProblem(c) is { } why ? $"; {why}" : "") + ")");
    }

    /// <summary>
    /// Per rank, one layer's attention work under contiguous and balanced APB with the default lengths (counted from the
    /// plans: <see cref="RankWork"/>), the zigzag ring's for scale, and what auto picks (<see cref="AutoStrategy"/>); APB's
    /// under a passing budget where one is given.
    /// </summary>
    static void Work(TextWriter o, int n, int q, int ranks, int? budget)
    {
        var options = new StrategyOptions { Ranks = ranks, PassingBudget = budget };
        o.WriteLine();
        o.WriteLine($"Attention work per rank and layer for {n:N0} context + {q} query tokens on {ranks} ranks (APB's default lengths" +
            StrategyOptions.BudgetLabel(budget) + ", query after 0 header tokens):");
        o.WriteLine($"  {"layout",-14}{"rank",5}{"local rows",12}{"pairs (M)",12}{"passing read",14}{"received",10}{"scored",9}");
        foreach (var kind in new[] { StrategyKind.Apb, StrategyKind.ApbBalanced, StrategyKind.Zigzag })
        {
            var plan = SequencePlanner.Plan(options with { Strategy = kind, FallbackBelow = 0, PassingBudget = kind.IsApb() ? budget : null }, n, q, 0).Plan!;
            var work = RankWork.All(kind, plan);
            foreach (var w in work)
                o.WriteLine($"  {(w.Rank == 0 ? kind.Name() : ""),-14}{w.Rank,5}{w.LocalRows,12:N0}{w.Pairs / 1e6,12:F1}{w.PassingRead,14:N0}{w.Received,10:N0}{w.Scored,9:N0}");
            o.WriteLine($"  {"",-14}imbalance (max/mean pairs) {RankWork.Imbalance(work):F3}; slowest rank {AutoStrategy.Cost(kind, plan) / 1e12:F2} TFLOP" +
                (kind.IsApb() ? $"; {plan.ApbLengths}" : " (exact)"));
        }
        o.WriteLine("  (pairs: visible query-key pairs; passing read, received and scored: rows per KV head; cost model: docs/apb-algorithm.md 2.7; passing budget: 2.8)");
        o.WriteLine($"APB's default lengths: {ApbDefaults.Why(n, ranks)}");
        var (chosen, why) = AutoStrategy.Choose(options with { Strategy = StrategyKind.Auto }, n, q, 0);
        o.WriteLine($"--strategy auto picks {chosen.Name()} ({why})");
    }

    /// <summary>The smallest rank count (a power of two) whose per-rank bytes fit an H200, or why none does.</summary>
    static string Fewest(ModelConfig c, StrategyKind s, int n, int q, KvCacheDType kv)
    {
        if (s == StrategyKind.Full)
            return RankMemory.Fits(RankMemory.PerRank(c, s, n, q, 1, kv), RankMemory.H200Bytes) ? "1" : "does not fit one";
        if (StrategyOptions.SequenceParallelProblem(c) is not null) return "- (this model runs full attention only)";
        for (int h = 2; h <= MaxRanks; h *= 2)
            if (RankMemory.Unrunnable(c, s, h) is null && RankMemory.Fits(RankMemory.PerRank(c, s, n, q, h, kv), RankMemory.H200Bytes))
                return h.ToString();
        return $"none up to {MaxRanks}";
    }

    static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F2} MiB",
        _ => $"{bytes / 1024.0:F1} KiB",
    };
}
