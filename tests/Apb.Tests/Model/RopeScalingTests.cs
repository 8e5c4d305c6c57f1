using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Checkpoints;
using Apb.Model;
using Apb.Strategies;
using Xunit;

namespace Apb.Tests.Model;

/// <summary>
/// The long-context rope types: YaRN's frequencies keep the fast dimensions, divide the slow ones by the factor and
/// blend between; its attention factor scales the rotation; dynamic NTK raises the base from the call's length past
/// max_position_embeddings and nowhere else. Checked against the formulas evaluated in double (fp32 rounding apart) and
/// against the properties that define them.
/// </summary>
public class RopeScalingTests
{
    // Qwen3's documented long-context setting, head_dim 128.
    static readonly RopeConfig QwenYarn = new(RopeType.Yarn, 1_000_000, Factor: 4, OriginalMaxPositions: 32768,
        AttentionFactor: 0.1 * Math.Log(4) + 1);

    static double Rel(double a, double b) => Math.Abs(a - b) / Math.Abs(b);

    [Fact]
    public void YarnKeepsFastDimensionsAndSlowsSlowOnes()
    {
        const int d = 128;
        var yarn = new RopeTable(QwenYarn, d);
        var plain = new RopeTable(new RopeConfig(RopeType.Default, 1_000_000), d);
        // The correction range in dimensions: beta_fast = 32 and beta_slow = 1 rotations over the original length.
        double Dim(double rotations) => d * Math.Log(32768 / (rotations * 2 * Math.PI)) / (2 * Math.Log(1_000_000));
        int low = (int)Math.Floor(Dim(32)), high = (int)Math.Ceiling(Dim(1));
        Assert.True(low > 0 && high < d / 2, $"range [{low}, {high}] should fall inside the {d / 2} frequencies");
        for (int i = 0; i < d / 2; i++)
        {
            double f = plain.InvFreq[i], got = yarn.InvFreq[i];
            double ramp = Math.Clamp((i - low) / (double)(high - low), 0, 1);
            double want = f / 4 * ramp + f * (1 - ramp);
            Assert.True(Rel(got, want) < 1e-6, $"frequency {i}: {got} vs {want}");
            if (i <= low) Assert.Equal(plain.InvFreq[i], yarn.InvFreq[i]);
        }
        Assert.Equal((float)(0.1 * Math.Log(4) + 1), yarn.AttentionScaling);
        Assert.Equal(1f, plain.AttentionScaling);
    }

    [Fact]
    public void YarnWithoutTruncationUsesTheExactRange()
    {
        const int d = 64;
        var r = new RopeConfig(RopeType.Yarn, 10000, Factor: 8, OriginalMaxPositions: 2048, AttentionFactor: 1, Truncate: false, BetaFast: 16, BetaSlow: 2);
        var yarn = new RopeTable(r, d);
        double Dim(double rotations) => d * Math.Log(2048 / (rotations * 2 * Math.PI)) / (2 * Math.Log(10000));
        double low = Math.Max(Dim(16), 0), high = Math.Min(Dim(2), d - 1);
        for (int i = 0; i < d / 2; i++)
        {
            double f = 1 / Math.Pow(10000, 2.0 * i / d);
            double ramp = Math.Clamp((i - low) / (high - low), 0, 1);
            Assert.True(Rel(yarn.InvFreq[i], f / 8 * ramp + f * (1 - ramp)) < 2e-6, $"frequency {i}");
        }
    }

    [Fact]
    public void AttentionScalingMultipliesTheRotation()
    {
        // A rotation keeps each (i, i + d/2) pair's length; YaRN's attention factor multiplies it, for q and k alike.
        const int d = 16, heads = 2;
        var table = new RopeTable(QwenYarn with { OriginalMaxPositions = 64 }, d);
        var b = new CpuBackend();
        var x = new CpuTensor(3, heads * d);
        var rng = new Random(5);
        foreach (ref float v in x.Span) v = (float)(rng.NextDouble() * 2 - 1);
        var before = x.Span.ToArray();
        b.Rope(x, heads, [0, 17, 1000], table);
        for (int r = 0; r < 3; r++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < d / 2; i++)
                {
                    int a = r * heads * d + h * d + i, c = a + d / 2;
                    double was = Math.Sqrt(before[a] * before[a] + before[c] * before[c]);
                    double now = Math.Sqrt(x.Span[a] * x.Span[a] + x.Span[c] * x.Span[c]);
                    Assert.True(Rel(now, was * table.AttentionScaling) < 1e-5, $"row {r} head {h} pair {i}: length {now} vs {was} x {table.AttentionScaling}");
                }
    }

    [Fact]
    public void DynamicIsTheDefaultUpToMaxPositionsAndRaisesTheBaseFromTheCallLength()
    {
        const int d = 32, maxPositions = 64;
        var dynamic = new RopeTable(new RopeConfig(RopeType.Dynamic, 10000, Factor: 2, OriginalMaxPositions: maxPositions), d);
        var plain = new RopeTable(new RopeConfig(RopeType.Default, 10000), d);
        Assert.Equal(plain.InvFreq, dynamic.InvFreq);
        Assert.Same(dynamic, dynamic.ForLength(1));
        Assert.Same(dynamic, dynamic.ForLength(maxPositions));

        foreach (int length in new[] { 65, 96, 1000 })
        {
            var t = dynamic.ForLength(length);
            Assert.NotSame(dynamic, t);
            Assert.Same(t, dynamic.ForLength(length));     // a decode step asks once; asking again is the same table
            double theta = 10000 * Math.Pow(2.0 * length / maxPositions - 1, d / (d - 2.0));
            for (int i = 0; i < d / 2; i++)
                Assert.True(Rel(t.InvFreq[i], 1 / Math.Pow(theta, 2.0 * i / d)) < 2e-6, $"length {length}, frequency {i}");
            // The model's own table answers for every length, whichever table is asked.
            Assert.Same(dynamic, t.ForLength(10));
        }
        // Other types have one table for every length.
        Assert.Same(plain, plain.ForLength(1 << 20));
    }

    [Fact]
    public void DynamicIsRefusedBySequenceParallelStrategies()
    {
        var config = ModelShapes.Get("tiny") with { Rope = new RopeConfig(RopeType.Dynamic, 10000, Factor: 2, OriginalMaxPositions: 64) };
        var e = Assert.Throws<ApbException>(() => new StrategyOptions { Strategy = StrategyKind.Apb, Ranks = 2 }.Validate(config));
        Assert.Contains("dynamic", e.Message);
        Assert.Contains("--strategy full", e.Message);
        new StrategyOptions { Strategy = StrategyKind.Apb, Ranks = 2 }.Validate(config with { Rope = QwenYarn });
    }
}
