using System.CommandLine;
using Apb.Eval;

namespace Apb.Cli.Commands;

static partial class EvalCommand
{
    /// <summary>
    /// `apb eval depth FILE.json... [--parts N]`: each row's per-sample scores by where the asked needle sits in the
    /// context, in quarters or N equal parts (<see cref="NeedleDepth"/>). The samples are made again from the file's seed
    /// with the run's tokenizer (samples depend only on seed, task, length and index), which is checked against the hash
    /// the file recorded.
    /// </summary>
    static Command Depth(Io io)
    {
        var files = new Argument<string[]>("FILE") { Description = "`apb eval ruler` JSON files (with per-sample scores)", Arity = ArgumentArity.OneOrMore };
        var strategy = new Option<string?>("--strategy") { Description = "only this strategy's rows (e.g. full, apb); default: every row" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "the run's model folder (its tokenizer.json measured the samples); default: the embedded model's" };
        var seed = new Option<int?>("--seed") { Description = "the samples' seed, for a file that did not record it" };
        var parts = new Option<int>("--parts")
        {
            Description = $"split the context into N equal parts (2 to {NeedleDepth.MaxParts}); the number of ranks gives one part per rank's block",
            DefaultValueFactory = _ => NeedleDepth.DefaultParts,
        };
        var threads = Threads();
        var cmd = new Command("depth", "a run's accuracy by where the asked needle sits: the first, second, third and last quarter of the context, or --parts N")
        {
            files, strategy, tokenizer, seed, parts, threads,
        };
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            int n = NeedleDepth.CheckParts(r.GetValue(parts));   // before the samples are made: a bad --parts fails at once
            string dir = CommonOptions.ResolveModel(r.GetValue(tokenizer));
            var tok = LoadTokenizer(dir);
            var tokHash = FileHash.Of(TokenizerFile(dir));
            foreach (var path in r.GetValue(files)!)
            {
                var f = RulerResults.Read(path);
                int s = SeedOf(f, r.GetValue(seed));
                if (f.Sha256.TryGetValue("tokenizer.json", out var want) && want != tokHash.Sha256)
                    throw new ApbException($"{path} was measured with a tokenizer.json of SHA-256 {want[..12]}..., {dir}'s is {tokHash.Sha256[..12]}...: " +
                        "the samples would differ; give the run's model folder with --tokenizer");
                var rows = f.Rows.Where(x => r.GetValue(strategy) is not { } only || x.Strategy.Name == only).ToList();
                if (rows.Count == 0)
                    throw new ApbException($"{path} has no rows of strategy {r.GetValue(strategy)} (it has: {string.Join(", ", f.Rows.Select(x => x.Strategy.Name).Distinct())})");
                rows = [.. rows.Where(x => RulerTasks.HasNeedle(x.Task))];
                if (rows.Count == 0)
                    throw new ApbException($"{path} has rows of cwe and fwe only: they count words over the whole context, so they have no needle to place");
                var samples = SamplesOf(rows, tok, s, r.GetValue(threads));
                var left = f.Rows.Select(x => x.Task).Where(t => !RulerTasks.HasNeedle(t)).Distinct().ToList();
                io.Out.WriteLine($"{path}: seed {s}, {rows.Count} rows; each cell: the mean score of the samples whose needle lies in that {(n == 4 ? "quarter" : "part")} " +
                                 $"of the context (their count){(left.Count > 0 ? $"; {string.Join(", ", left)} left out (no needle: they count words over the whole context)" : "")}");
                io.Out.WriteLine();
                io.Out.Write(NeedleDepth.Format(rows.Select(x => NeedleDepth.Of(x, i => samples[(x.Task, x.Length)][i], n))));
                io.Out.WriteLine();
            }
            return 0;
        }));
        return cmd;
    }

    static int SeedOf(RulerResults f, int? given)
    {
        if (f.Seed is long recorded)
        {
            if (given is int g && g != recorded)
                throw new ApbException($"{f.Path} records seed {recorded}; --seed {g} would score its rows against other samples. Leave --seed out.");
            return (int)recorded;
        }
        return given ?? throw new ApbException($"{f.Path} does not record its samples' seed: give it with --seed (apb eval ruler's default is 0)");
    }

    /// <summary>
    /// Samples 0 .. n - 1 of every task and length of the rows (n the most scores a row has), by (task, length): the
    /// rows of a results file are a grid of tasks and lengths, so the generator's grid is the file's.
    /// </summary>
    static Dictionary<(string, int), EvalSample[]> SamplesOf(List<RulerRow> rows, Tokenization.HfTokenizer tok, int seed, int threads)
    {
        var tasks = rows.Select(x => x.Task).Distinct().Select(RulerTasks.Get).ToList();
        var lengths = rows.Select(x => x.Length).Distinct().ToList();
        var made = new SampleGenerator(tok).GenerateAll(tasks, lengths, rows.Max(x => x.Scores?.Count ?? 0), seed, threads);
        return made.Select(e => e.Sample).GroupBy(x => (x.Task, x.TargetTokens)).ToDictionary(g => g.Key, g => g.OrderBy(x => x.Index).ToArray());
    }
}
