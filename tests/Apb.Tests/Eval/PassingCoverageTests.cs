using System.Text.Json;
using Apb.Eval;
using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.Eval;

/// <summary>
/// `apb eval coverage` (Diagnostics/PassingCoverage) on the embedded model at 2K on 4 ranks: the shares it reports obey
/// what the definition forces, so a wrong visible set or selection shows.
/// </summary>
public class PassingCoverageTests
{
    [Fact]
    public void CoverageIsOneWhenEverythingIsPassedAndGrowsWithThePassingLength()
    {
        using var tmp = new TempDir();
        // A passing length of a whole block passes every selectable row: the block of the command's sample (its
        // defaults: niah_multikey_2, seed 0, sample 0, the embedded model's tokenizer) over 4 ranks.
        var tokenizer = HfTokenizer.Load(Path.Combine(Repo.EmbeddedModel, "tokenizer.json"), Path.Combine(Repo.EmbeddedModel, "tokenizer_config.json"));
        int n = new SampleGenerator(tokenizer).Generate(RulerTasks.Get("niah_multikey_2"), 2048, 0, 0).ContextIds.Length;
        string all = $"apb l_p {(n + 3) / 4}";

        string json = tmp.File("coverage.json");
        var (code, output, err) = CliRun.Apb("eval", "coverage", "--length", "2k", "--ranks", "4", "--passing", $"0,128,{(n + 3) / 4}", "--rows", "8", "--out", json);
        Assert.True(code == 0, err + output);
        Assert.Contains($"| layer | star | apb l_p 0 | apb l_p 128 | {all} |", output);

        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        Assert.Equal(n, doc.RootElement.GetProperty("context_tokens").GetInt32());   // the sample the block was worked out for
        var rows = doc.RootElement.GetProperty("results").EnumerateArray()
            .Select(r => (Layer: r.GetProperty("layer").GetInt32(), Setting: r.GetProperty("setting").GetString()!,
                          Coverage: r.GetProperty("coverage").GetDouble(), OfVisible: r.GetProperty("passed_share_of_visible").GetDouble(),
                          OfFull: r.GetProperty("passed_share_of_full").GetDouble(), Error: r.GetProperty("output_error").GetDouble(),
                          ByRank: r.GetProperty("output_error_by_rank").EnumerateArray().Select(x => x.GetDouble()).ToArray()))
            .ToList();
        var layers = rows.Select(r => r.Layer).Distinct().ToList();
        Assert.Equal(6, layers.Count); // the embedded model's layers
        foreach (int l in layers)
        {
            double Of(string s) => rows.Single(r => r.Layer == l && r.Setting == s).Coverage;
            // Every block row sees every key when every selectable row is passed: full attention itself.
            Assert.Equal(1.0, Of(all), 9);
            // Top-k sets are nested, so the visible set, and with it the share, can only grow with l_p.
            Assert.InRange(Of("apb l_p 0"), 1e-6, Of("apb l_p 128") + 1e-12);
            Assert.True(Of("apb l_p 128") <= 1.0 + 1e-12);
            // Star's rows of ranks 2 and 3 miss the blocks between the first and their own.
            Assert.InRange(Of("star"), 1e-6, 1.0 - 1e-6);
        }
        foreach (var r in rows.Where(r => r.Setting == "apb l_p 0" || r.Setting == "star"))
            Assert.Equal(0.0, r.OfFull); // nothing passed
        foreach (var r in rows.Where(r => r.Setting == all))
        {
            Assert.Equal(r.OfFull, r.OfVisible, 9); // coverage 1: the two shares are one
            Assert.True(r.Error < 1e-6, $"layer {r.Layer}: every key visible, so the output is full attention's up to the float weights of the passed rows (error {r.Error})");
        }
        foreach (var r in rows.Where(r => r.Setting == "star" || r.Setting == "apb l_p 0"))
            Assert.InRange(r.Error, 1e-6, 2.0); // keys are missing: the output moves, by less than twice its size
        foreach (var r in rows.Where(r => r.Setting == "apb l_p 128"))
            Assert.True(r.OfVisible >= r.OfFull - 1e-12, $"layer {r.Layer}: APB's softmax renormalizes over fewer keys, so a passed row's share can only grow");

        // By rank: ranks 1-3 with 8 rows each, so the ranks' mean is the layer's; a Star row of rank 1 sees the first block
        // and its own, every key before it, so its output is full attention's, while later Star ranks miss blocks.
        Assert.Contains("| setting | rank 1 | rank 2 | rank 3 |", output);
        foreach (var r in rows)
        {
            Assert.Equal(3, r.ByRank.Length);
            Assert.Equal(r.Error, r.ByRank.Average(), 9);
        }
        foreach (var r in rows.Where(r => r.Setting == "star"))
        {
            Assert.True(r.ByRank[0] < 1e-6, $"layer {r.Layer}: Star's rank 1 sees every earlier key (error {r.ByRank[0]})");
            Assert.True(r.ByRank[2] > 1e-6, $"layer {r.Layer}: Star's rank 3 misses blocks 1 and 2 (error {r.ByRank[2]})");
        }
    }

    /// <summary>
    /// Under a passing budget B a rank r row sees the best floor(B / r) rows of each earlier rank: with B 64 on 4 ranks,
    /// rank 3 reads 21 of each whether l_p is 64, 32 or 21 (for 21 the budget never binds), and rank 2 reads 32 of each
    /// for l_p 64 and 32, so those ranks' output errors agree; rank 1 reads all of l_p, so there they differ.
    /// </summary>
    [Fact]
    public void UnderABudgetARankSeesTheBestRowsOfItsShare()
    {
        using var tmp = new TempDir();
        string json = tmp.File("coverage.json");
        var (code, output, err) = CliRun.Apb("eval", "coverage", "--length", "2k", "--ranks", "4", "--passing", "64,32,21", "--passing-budget", "64",
            "--rows", "8", "--out", json);
        Assert.True(code == 0, err + output);
        Assert.Contains("| layer | star | apb l_p 21 B 64 | apb l_p 32 B 64 | apb l_p 64 B 64 |", output);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        var rows = doc.RootElement.GetProperty("results").EnumerateArray()
            .Select(r => (Layer: r.GetProperty("layer").GetInt32(), Setting: r.GetProperty("setting").GetString()!,
                          ByRank: r.GetProperty("output_error_by_rank").EnumerateArray().Select(x => x.GetDouble()).ToArray()))
            .ToList();
        foreach (int l in rows.Select(r => r.Layer).Distinct())
        {
            double[] Of(int lp) => rows.Single(r => r.Layer == l && r.Setting == $"apb l_p {lp} B 64").ByRank;
            Assert.Equal(Of(21)[2], Of(64)[2], 9);
            Assert.Equal(Of(32)[2], Of(64)[2], 9);
            Assert.Equal(Of(32)[1], Of(64)[1], 9);
            Assert.NotEqual(Of(32)[0], Of(64)[0], 9);
        }
    }

    [Theory]
    [InlineData("--ranks", "1", "coverage needs at least 2 ranks (got 1)")]
    [InlineData("--passing-budget", "-1", "--passing-budget must be >= 0")]
    [InlineData("--passing", "64,-5", "--passing '-5' is not a length >= 0")]
    [InlineData("--rows", "0", "rows per block must be at least 1 (got 0)")]
    [InlineData("--task", "niah_single_1,vt", "--task takes one task")]
    public void BadSettingsAreNamed(string option, string value, string message)
    {
        var (code, output, err) = CliRun.Apb("eval", "coverage", "--length", "1k", option, value);
        Assert.Equal(1, code);
        Assert.Contains(message, err);
        Assert.Equal("", output);
    }
}
