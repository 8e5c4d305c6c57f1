using System.Text.Json;
using Xunit;

namespace Apb.Tests.Bench;

/// <summary>`apb bench decode` on the CPU with the tiny random-weight shape: the table and the JSON the GPU run fills.</summary>
public class BenchDecodeTests
{
    [Fact]
    public void DecodeBenchTimesEveryContextAndWritesTheSharedJsonFields()
    {
        using var tmp = new TempDir();
        var dir = tmp.File("bench"); // not there yet: the bench creates it
        var (code, output, err) = CliRun.Apb("bench", "decode", "--shape", "tiny", "--contexts", "40,1k", "--tokens", "3", "--warmup", "1", "--out", dir);
        Assert.True(code == 0, err + output);
        Assert.Contains("| apb | cpu | 1024 |", output);

        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "decode.json")));
        var root = doc.RootElement;
        Assert.Equal("apb", root.GetProperty("engine").GetString());
        Assert.Equal(3, root.GetProperty("tokens").GetInt32());
        var results = root.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal([40, 1024], results.Select(r => r.GetProperty("context").GetInt32()));
        foreach (var r in results)
        {
            Assert.Equal("ok", r.GetProperty("status").GetString());
            // ms_per_token is the median of the timed steps, tokens_per_s one token per ms_per_token.
            var steps = r.GetProperty("ms_runs").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            Assert.Equal(3, steps.Length);
            Assert.All(steps, x => Assert.InRange(x, 1e-4, 1e4));
            double ms = r.GetProperty("ms_per_token").GetDouble();
            BenchPrefillTests.AssertClose(BenchPrefillTests.Median(steps), ms, $"context {r.GetProperty("context").GetInt32()}: ms_per_token vs the median of ms_runs");
            BenchPrefillTests.AssertClose(1000 / ms, r.GetProperty("tokens_per_s").GetDouble(), "tokens_per_s vs 1000 / ms_per_token");
            Assert.Equal(JsonValueKind.Null, r.GetProperty("floor_ms").ValueKind); // no HBM floor on the CPU
        }
    }

    [Theory]
    [InlineData("decode")]
    [InlineData("prefill")]
    public void ShapeAndModelTogetherAreRefusedWithTheReason(string bench)
    {
        var (code, _, err) = CliRun.Apb("bench", bench, "--shape", "tiny", "--model", Repo.Fixture("llama-tiny"));
        Assert.Equal(1, code);
        Assert.Contains("give --shape or --model, not both", err);
    }

    [Fact]
    public void ContextsThatAreNotLengthsAreNamedInTheError()
    {
        var (code, _, err) = CliRun.Apb("bench", "decode", "--shape", "tiny", "--contexts", "12q");
        Assert.Equal(1, code);
        Assert.Contains("--contexts '12q' is not a length", err);
    }
}
