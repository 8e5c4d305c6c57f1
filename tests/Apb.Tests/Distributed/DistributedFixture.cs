using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Checkpoints;
using Apb.Engine;
using Apb.Eval;
using Apb.Model;
using Apb.Strategies;
using Apb.Runtime;
using Apb.Tests.Model;

namespace Apb.Tests.Distributed;

/// <summary>
/// Fixture models loaded once per test run (weights are shared by every rank and every test, as the session shares them),
/// random token ids, the single-rank oracle every strategy is compared with, and small tensor helpers.
/// </summary>
static class DistributedFixture
{
    public sealed record Loaded(string Name, string Dir, ModelConfig Config, LlamaWeights Weights);

    static readonly Dictionary<string, Loaded> s_models = new();

    /// <summary>"embedded": the shipped trained model (models/embedded); any other name: tests/fixtures/models/NAME.</summary>
    public static Loaded LoadModel(string name)
    {
        lock (s_models)
        {
            if (s_models.TryGetValue(name, out var m)) return m;
            string dir = name == "embedded" ? Repo.EmbeddedModel : Repo.Fixture(name);
            var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
            var ckpt = CheckpointWeights.Open(dir); // kept open for the whole run: the weights point into it
            return s_models[name] = new Loaded(name, dir, config, LlamaWeights.Load(config, ckpt, new CpuBackend()));
        }
    }

    public static int[] Ids(int count, int seed, int vocab)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => rng.Next(3, vocab)).ToArray();
    }

    /// <summary>Options for the short test contexts: the fallback to one rank is off so every strategy really runs.</summary>
    public static StrategyOptions Options(StrategyKind strategy, int ranks) =>
        new() { Strategy = strategy, Ranks = ranks, FallbackBelow = 0 };

    /// <summary>A request on a rank group of CPU threads made for it (the session owns the group).</summary>
    public static GroupSession Session(Loaded m, StrategyOptions options) => Session(m, options, _ => new CpuBackend());

    public static GroupSession Session(Loaded m, StrategyOptions options, Func<int, IBackend> backendFor) =>
        new(RankGroup.Create(m.Config, options, backendFor, _ => m.Weights), ownsGroup: true);

    public static float[] FullLogits(Loaded m, IReadOnlyList<int> context, IReadOnlyList<int> query)
    {
        var session = new LocalSession(new LlamaModel(m.Config, m.Weights, new CpuBackend()), context.Count + query.Count);
        return session.AllLogits(context.Concat(query).ToArray());
    }

    /// <summary>Greedy tokens and every step's logits: the prefill's, then one per decoded token.</summary>
    public static (List<int> Tokens, List<float[]> Logits) Generate(IInferenceSession s, IReadOnlyList<int> context, IReadOnlyList<int> query, int count)
    {
        var logits = s.Prefill(context, query);
        var tokens = new List<int>();
        var all = new List<float[]> { logits };
        for (int i = 0; i < count; i++)
        {
            int next = Sampler.ArgMax(logits);
            tokens.Add(next);
            logits = s.Decode(next);
            all.Add(logits);
        }
        return (tokens, all);
    }

    public static double RelativeError(ReadOnlySpan<float> a, ReadOnlySpan<float> b) => ReferenceFixture.RelativeError(a, b);

    /// <summary>A CPU tensor's values, row-major.</summary>
    public static float[] Values(CpuBackend b, Tensor t) { var a = new float[t.Rows * t.Cols]; b.Download(t, a); return a; }

    /// <summary>A new CPU tensor whose element i (row-major) is f(i).</summary>
    public static Tensor Filled(CpuBackend b, int rows, int cols, Func<int, float> f)
    {
        var t = b.Allocate(rows, cols);
        b.Upload(Enumerable.Range(0, rows * cols).Select(f).ToArray(), t);
        return t;
    }

    /// <summary>
    /// A new CPU tensor whose row i holds values in [-1, 1) drawn from (kind, idOf(i)) alone: rows with one id are equal on
    /// every rank, so a one-layer test's rows are what they are (an anchor row, a context position), wherever they sit.
    /// </summary>
    public static Tensor RowsById(CpuBackend b, int rows, int cols, int kind, Func<int, int> idOf)
    {
        var values = Enumerable.Range(0, rows).Select(i =>
        {
            var rng = new Random(kind * 100_000 + idOf(i));
            return Enumerable.Range(0, cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        }).ToArray();
        return Filled(b, rows, cols, e => values[e / cols][e % cols]);
    }
}
