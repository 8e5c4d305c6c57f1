using System.Diagnostics;
using Apb.Backends;
using Apb.Engine;
using Apb.Eval;
using Apb.Strategies;

namespace Apb.Cli.Commands;

/// <summary>
/// What `apb generate` does with no prompt and no model: the embedded retrieval model answers a needle-in-a-haystack
/// question over a few thousand tokens, once with APB over 4 in-process CPU ranks and once with full attention on one,
/// and says whether they agree and how long each took. It shows the whole engine (tokenizer, plan, anchor with the
/// query, passing blocks, the exact star-phase decode) in well under a minute on two cores.
/// </summary>
static class DemoCommand
{
    public const int ContextTokens = 3000, Ranks = 4;

    public static int Run(Io io, string device, int seed, bool? fp8Attention = null)
    {
        using var bundle = ModelBundle.Open(CommonOptions.ResolveModel(null));
        var tok = bundle.Tokenizer;
        var sample = new SampleGenerator(tok).Generate(RulerTasks.Get("niah_single_1"), ContextTokens, seed, 0);
        var stop = bundle.StopTokens.ToHashSet();
        var sampling = new SamplingOptions { MaxNewTokens = RulerHarness.MaxNewTokens(sample) };
        io.Err.WriteLine($"model {Path.GetFullPath(bundle.Directory)} ({bundle.Config.NumHiddenLayers} layers, " +
                         $"{bundle.Config.ParameterCount / 1e6:F1}M parameters) on {device}");
        io.Err.WriteLine($"needle-in-a-haystack: {sample.ContextIds.Length} context tokens + {sample.QueryIds.Length} query tokens (seed {seed})");
        io.Out.WriteLine($"question: {sample.Sample.Query.Trim()}");

        var (scorer, heads) = ScorerChoice.Resolve(null, null, bundle.Directory);
        var apbOptions = new StrategyOptions
        {
            Strategy = StrategyKind.Apb, Ranks = Ranks, FallbackBelow = 0, PadTokenId = tok.PadTokenId ?? 0, Timings = true,
            Scorer = scorer, RetainingHeadsPath = heads,
        };
        // The same session construction as `generate --strategy ...`: a rank group made for the one request.
        int prompt = sample.ContextIds.Length + sample.QueryIds.Length;
        IInferenceSession Open(StrategyOptions o) =>
            StrategyFlags.Session(bundle, o, () => CommonOptions.Backend(device, fp8Attention), RulerHarness.Capacity(sample), prompt)!;
        var (apb, apbTime, apbSession) = Answer(() => Open(apbOptions), sample, tok, sampling, stop);
        var (full, fullTime, _) = Answer(() => Open(new StrategyOptions()), sample, tok, sampling, stop);

        double apbScore = RulerScore.Score(apb, sample.Sample.Answers), fullScore = RulerScore.Score(full, sample.Sample.Answers);
        io.Out.WriteLine($"expected: {string.Join(", ", sample.Sample.Answers)}");
        io.Out.WriteLine($"apb x{Ranks}:   {apb.Trim()}   ({(apbScore == 1 ? "correct" : "wrong")}, {apbTime.TotalSeconds:F2} s)");
        io.Out.WriteLine($"full x1:  {full.Trim()}   ({(fullScore == 1 ? "correct" : "wrong")}, {fullTime.TotalSeconds:F2} s)");
        io.Out.WriteLine(apb == full ? "APB and full attention agree." : "APB and full attention differ.");
        io.Err.WriteLine();
        StrategyFlags.Report(io, apbSession, timings: true);
        io.Err.WriteLine("try: apb generate --prompt \"...\"; apb eval ruler --tasks all --lengths 4k --strategies full,star,apb --ranks 4 --chart ruler.svg");
        return 0;
    }

    static (string Text, TimeSpan Time, IInferenceSession Session) Answer(Func<IInferenceSession> open, EncodedSample s,
        Tokenization.HfTokenizer tok, SamplingOptions sampling, IReadOnlyCollection<int> stop)
    {
        var sw = Stopwatch.StartNew();
        var session = open();
        try
        {
            var r = Generator.Run(session, tok, s.ContextIds, s.QueryIds, sampling, stop);
            return (r.Text, sw.Elapsed, session);
        }
        finally { session.Dispose(); }
    }
}
