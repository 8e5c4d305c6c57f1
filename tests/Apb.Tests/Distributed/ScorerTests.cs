using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Checkpoints;
using Apb.Strategies;
using Apb.Strategies.Apb;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Distributed;

/// <summary>The two importance scorers against a direct computation, and the pool + top-k selection.</summary>
public class ScorerTests
{
    static float[] Random(int n, Random rng) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

    static Tensor Up(IBackend b, float[] x, int rows, int cols)
    {
        var t = b.Allocate(rows, cols);
        b.Upload(x, t);
        return t;
    }

    [Fact]
    public void RetainingHeadScoresEqualADirectComputation()
    {
        var c = LoadModel("embedded-random").Config;
        const int hidden = 24, rows = 9, layer = 2;
        string path = RetainingHeadsFile.Write(c, hidden, seed: 3);
        using var heads = RetainingHeads.Open(path, c);
        Assert.Equal(hidden, heads.HiddenSize);
        var b = new CpuBackend();
        var scorer = new RetainingHeadScorer(b, c, heads);
        var rng = new Random(1);
        var q = Random((rows + 2) * c.QDim, rng); var k = Random((rows + 2) * c.KvDim, rng); var v = Random((rows + 2) * c.KvDim, rng);
        var got = scorer.Score(layer, Up(b, q, rows + 2, c.QDim), Up(b, k, rows + 2, c.KvDim), Up(b, v, rows + 2, c.KvDim), rows);

        // fc1 and fc2 straight from the file's bytes: fc2(silu(fc1([q, k, v]))).
        using var file = SafeTensorsFile.Open(path);
        float[] W(string name) { var bytes = file.Bytes(file.Tensors[name]).ToArray(); var f = new float[bytes.Length / 4]; Buffer.BlockCopy(bytes, 0, f, 0, bytes.Length); return f; }
        var fc1 = W($"model.layers.{layer}.self_attn.fc1.weight");
        var fc2 = W($"model.layers.{layer}.self_attn.fc2.weight");
        int input = c.QDim + 2 * c.KvDim, kv = c.NumKeyValueHeads;
        var want = new float[rows * kv];
        for (int t = 0; t < rows; t++)
        {
            var x = q.Skip(t * c.QDim).Take(c.QDim).Concat(k.Skip(t * c.KvDim).Take(c.KvDim)).Concat(v.Skip(t * c.KvDim).Take(c.KvDim)).ToArray();
            var h = new double[hidden];
            for (int i = 0; i < hidden; i++)
            {
                double s = 0;
                for (int j = 0; j < input; j++) s += (double)fc1[i * input + j] * x[j];
                h[i] = s / (1 + Math.Exp(-s));
            }
            for (int o = 0; o < kv; o++)
            {
                double s = 0;
                for (int i = 0; i < hidden; i++) s += fc2[o * hidden + i] * h[i];
                want[t * kv + o] = (float)s;
            }
        }
        Assert.True(RelativeError(got, want) < 1e-5, $"relative error {RelativeError(got, want):E3}");
    }

    /// <summary>
    /// The query-aware score against a direct computation in double: per KV head, the mean over query tokens of the dot
    /// with the group's mean query, and the dot with the block's mean key, each standardized over the block's rows, mixed
    /// as z(query) - w z(similarity). The rows past the block's end (pad rows) are in neither the key mean nor the scores.
    /// With w = 0 (the query-only scorer) the score is the query dot itself, the paper's scorer.
    /// </summary>
    [Theory]
    [InlineData(NoveltyTerm.Weight)]
    [InlineData(0.25f)]
    [InlineData(0f)]
    public void QueryAwareScoresEqualStandardizedQueryDotsMixedWithKeyNovelty(float weight)
    {
        var c = LoadModel("llama-tiny").Config; // 6 heads over 2 KV heads: groups of 3
        var b = new CpuBackend();
        var rng = new Random(2);
        const int queryRows = 4, rows = 11, real = rows - 2;
        var q = Random(queryRows * c.QDim, rng);
        var k = Random(rows * c.KvDim, rng);
        var scorer = new QueryAwareScorer(b, c, weight);
        var qbar = b.Allocate(1, c.KvDim);
        scorer.QueryMean(Up(b, q, queryRows, c.QDim), qbar);
        var got = scorer.Score(Up(b, k, rows, c.KvDim), qbar, real);

        int d = c.HeadDim, g = c.GroupSize, kv = c.NumKeyValueHeads;
        var want = new float[real * kv];
        for (int h = 0; h < kv; h++)
        {
            var query = new double[real];
            var similarity = new double[real];
            for (int t = 0; t < real; t++)
                for (int c2 = 0; c2 < d; c2++)
                {
                    double key = k[t * c.KvDim + h * d + c2], keyMean = 0;
                    for (int u = 0; u < real; u++) keyMean += k[u * c.KvDim + h * d + c2] / real;
                    similarity[t] += key * keyMean;
                    for (int i = 0; i < queryRows; i++)
                    {
                        double groupMean = 0;
                        for (int m = 0; m < g; m++) groupMean += q[i * c.QDim + (h * g + m) * d + c2];
                        query[t] += key * groupMean / g / queryRows;
                    }
                }
            var zq = Standardized(query);
            var zs = Standardized(similarity);
            for (int t = 0; t < real; t++) want[t * kv + h] = (float)(weight == 0 ? query[t] : zq[t] - weight * zs[t]);
        }
        Assert.True(RelativeError(got, want) < 1e-5, $"relative error {RelativeError(got, want):E3}");
    }

    /// <summary>
    /// The retaining heads' scores (in the backend's activation type) widened to fp32 and mixed with the keys' novelty:
    /// z(heads) - w z(K . kbar) per KV head over the block's rows; the keys' rows past them are not in the key mean.
    /// Only the novelty-free kinds have weight 0.
    /// </summary>
    [Fact]
    public void HeadScoresMixedWithNoveltyEqualTheStandardizedMix()
    {
        Assert.Equal(0f, ScorerChoice.NoveltyWeight(ScorerKind.RetainingOnly));
        Assert.Equal(0f, ScorerChoice.NoveltyWeight(ScorerKind.QueryOnly));
        Assert.True(ScorerChoice.NoveltyWeight(ScorerKind.Retaining) > 0);
        var c = LoadModel("llama-tiny").Config;
        var b = new CpuBackend();
        var rng = new Random(4);
        const int rows = 10, real = rows - 3;
        int d = c.HeadDim, kv = c.NumKeyValueHeads;
        float weight = ScorerChoice.NoveltyWeight(ScorerKind.Retaining);
        var heads = Random(real * kv, rng);
        var k = Random(rows * c.KvDim, rng);
        using var novelty = new NoveltyTerm(b, c);
        var mixed = novelty.Widened(Up(b, heads, real, kv));
        novelty.MixInto(mixed, Up(b, k, rows, c.KvDim), weight);
        var got = new float[real * kv];
        b.Download(mixed, got);

        var want = new float[real * kv];
        for (int h = 0; h < kv; h++)
        {
            var own = new double[real];
            var similarity = new double[real];
            for (int t = 0; t < real; t++)
            {
                own[t] = heads[t * kv + h];
                for (int c2 = 0; c2 < d; c2++)
                {
                    double keyMean = 0;
                    for (int u = 0; u < real; u++) keyMean += k[u * c.KvDim + h * d + c2] / real;
                    similarity[t] += k[t * c.KvDim + h * d + c2] * keyMean;
                }
            }
            var zh = Standardized(own);
            var zs = Standardized(similarity);
            for (int t = 0; t < real; t++) want[t * kv + h] = (float)(zh[t] - weight * zs[t]);
        }
        Assert.True(RelativeError(got, want) < 1e-5, $"relative error {RelativeError(got, want):E3}");
    }

    static double[] Standardized(double[] x)
    {
        double mean = x.Average(), std = Math.Sqrt(x.Sum(v => (v - mean) * (v - mean)) / x.Length);
        return x.Select(v => (v - mean) / std).ToArray();
    }

    /// <summary>The mix of two score columns by their standardized values, in place; a constant column contributes 0.</summary>
    [Fact]
    public void CombineStandardizedMixesColumnsByTheirSpread()
    {
        var b = new CpuBackend();
        // Column 0 of a: 1, 2, 3 (z: -1.2247, 0, 1.2247); column 1 constant. b: 10, 30, 20 and 0, 0, 4.
        var a = Up(b, [1, 7, 2, 7, 3, 7], 3, 2);
        var o = Up(b, [10, 0, 30, 0, 20, 4], 3, 2);
        b.Passing.CombineStandardized(a, 2f, o, -1f, a);
        var got = new float[6];
        b.Download(a, got);
        double z = Math.Sqrt(1.5);
        double[] zb0 = [-z, z, 0], zb1 = [-1 / Math.Sqrt(2), -1 / Math.Sqrt(2), Math.Sqrt(2)];
        double[] want = [2 * -z - zb0[0], -zb1[0], 0 - zb0[1], -zb1[1], 2 * z - zb0[2], -zb1[2]];
        for (int i = 0; i < 6; i++) Assert.Equal(want[i], got[i], 5);
    }

    [Fact]
    public void SelectionPoolsOverFiveAndKeepsTheTopPerHeadInOrder()
    {
        // Two heads; head 0 has one spike at row 6, head 1 a spike at row 0 and one at row 9.
        const int rows = 12, heads = 2;
        var s = new float[rows * heads];
        s[6 * heads + 0] = 5;
        s[0 * heads + 1] = 3; s[9 * heads + 1] = 4;
        var pooled = CpuPassingOps.MaxPool(s, rows, heads);
        for (int t = 0; t < rows; t++) Assert.Equal(Math.Abs(t - 6) <= 2 ? 5f : 0f, pooled[t * heads]);
        var picked = CpuPassingOps.Select(s, rows, heads, 5);
        Assert.Equal(new[] { 4, 5, 6, 7, 8 }, Enumerable.Range(0, 5).Select(i => picked[i * heads]));
        // head 1: rows 7..11 pool to 4 (window around 9), rows 0..2 to 3; the top 5 are 7..11.
        Assert.Equal(new[] { 7, 8, 9, 10, 11 }, Enumerable.Range(0, 5).Select(i => picked[i * heads + 1]));
        // Ties go to the earlier row.
        Assert.Equal(new[] { 0, 1 }, Enumerable.Range(0, 2).Select(i => CpuPassingOps.Select(new float[rows * heads], rows, heads, 2)[i * heads]));
    }

    [Fact]
    public void MissingRetainingHeadsFileIsAClearError()
    {
        var c = LoadModel("embedded-random").Config;
        var e = Assert.Throws<ApbException>(() => RetainingHeads.Open("/nonexistent/heads.safetensors", c));
        Assert.Contains("/nonexistent/heads.safetensors", e.Message);
        Assert.Contains("--scorer query", e.Message);
    }

    [Fact]
    public void WrongRetainingHeadShapesNameTensorExpectedAndFound()
    {
        var c = LoadModel("embedded-random").Config; // fc2 must be [2, hidden]
        string path = RetainingHeadsFile.Write(c, 16, 1, (layer, kind, shape) => layer == 2 && kind == "fc2" ? [3, 16] : shape);
        var e = Assert.Throws<ApbException>(() => RetainingHeads.Open(path, c));
        Assert.Contains("model.layers.2.self_attn.fc2.weight", e.Message);
        Assert.Contains("[3, 16]", e.Message);
        Assert.Contains("[2, 16]", e.Message);

        string wrongInput = RetainingHeadsFile.Write(c, 16, 1, (layer, kind, shape) => kind == "fc1" ? [16, 100] : shape);
        e = Assert.Throws<ApbException>(() => RetainingHeads.Open(wrongInput, c));
        Assert.Contains("model.layers.0.self_attn.fc1.weight", e.Message);
        Assert.Contains("[16, 100]", e.Message);
        Assert.Contains($"[16, {c.QDim + 2 * c.KvDim}]", e.Message);

        string missing = RetainingHeadsFile.Write(c, 16, 1, layers: 3);
        e = Assert.Throws<ApbException>(() => RetainingHeads.Open(missing, c));
        Assert.Contains("model.layers.3.self_attn.fc1.weight", e.Message);
        Assert.Contains("missing", e.Message);
    }

    /// <summary>
    /// The default scorer: the retaining heads when a file is given or the model folder ships one, the query-aware scorer
    /// when there are none; a scorer named explicitly is kept, and an impossible combination says what to do.
    /// </summary>
    [Fact]
    public void DefaultScorerIsTheRetainingHeadsWhenTheModelFolderOrTheFlagHasThem()
    {
        using var withHeads = new TempDir();
        using var without = new TempDir();
        string inFolder = withHeads.File(ScorerChoice.HeadsFileName);
        File.WriteAllBytes(inFolder, [0]); // existence decides; RetainingHeads.Open checks the contents
        string given = without.File("mine.safetensors");

        Assert.Equal((ScorerKind.Retaining, inFolder), ScorerChoice.Resolve(null, null, withHeads.Path));
        Assert.Equal((ScorerKind.Query, (string?)null), ScorerChoice.Resolve(null, null, without.Path));
        Assert.Equal((ScorerKind.Query, (string?)null), ScorerChoice.Resolve(null, null, null)); // random weights
        Assert.Equal((ScorerKind.Retaining, given), ScorerChoice.Resolve(null, given, without.Path));
        Assert.Equal((ScorerKind.Retaining, given), ScorerChoice.Resolve(null, given, withHeads.Path)); // the flag wins
        Assert.Equal((ScorerKind.Query, (string?)null), ScorerChoice.Resolve(ScorerKind.Query, null, withHeads.Path));
        Assert.Equal((ScorerKind.QueryOnly, (string?)null), ScorerChoice.Resolve(ScorerKind.QueryOnly, null, withHeads.Path));
        Assert.Equal((ScorerKind.Retaining, inFolder), ScorerChoice.Resolve(ScorerKind.Retaining, null, withHeads.Path));
        Assert.Equal((ScorerKind.RetainingOnly, given), ScorerChoice.Resolve(ScorerKind.RetainingOnly, given, withHeads.Path));

        var e = Assert.Throws<ApbException>(() => ScorerChoice.Resolve(ScorerKind.Retaining, null, without.Path));
        Assert.Contains("--retaining-heads FILE", e.Message);
        Assert.Contains(without.Path, e.Message);
        Assert.Contains("--scorer query", e.Message);
        e = Assert.Throws<ApbException>(() => ScorerChoice.Resolve(ScorerKind.RetainingOnly, null, without.Path));
        Assert.Contains("--scorer retaining-only needs", e.Message);
        e = Assert.Throws<ApbException>(() => ScorerChoice.Resolve(ScorerKind.Query, given, without.Path));
        Assert.Contains("--scorer query", e.Message);
        Assert.Contains("--retaining-heads", e.Message);
        e = Assert.Throws<ApbException>(() => ScorerChoice.Resolve(ScorerKind.QueryOnly, given, without.Path));
        Assert.Contains("--scorer query-only", e.Message);
    }
}
