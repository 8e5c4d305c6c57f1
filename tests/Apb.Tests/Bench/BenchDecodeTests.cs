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
            Assert.Equal(3, r.GetProperty("ms_runs").GetArrayLength());
            Assert.InRange(r.GetProperty("ms_per_token").GetDouble(), 1e-4, 1e4);
            Assert.True(r.GetProperty("tokens_per_s").GetDouble() > 0);
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
