using System.Text.Json;
using Xunit;

namespace Apb.Tests.Bench;

/// <summary>What the bench JSON records about the run itself: the command as typed, once.</summary>
public class BenchJsonTests
{
    [Fact]
    public void PrefillJsonRecordsTheCommandOnceAndItsNumbersAgree()
    {
        using var tmp = new TempDir();
        var dir = tmp.File("bench");
        var (code, output, err) = CliRun.Apb("bench", "prefill", "--shape", "tiny", "--lengths", "64", "--strategies", "full,apb",
            "--query", "8", "--warmup", "0", "--repeats", "3", "--no-profile", "--out", dir);
        Assert.True(code == 0, err + output);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "prefill.json")));
        var root = doc.RootElement;
        Assert.Equal($"apb bench prefill --shape tiny --lengths 64 --strategies full,apb --query 8 --warmup 0 --repeats 3 --no-profile --out {dir}",
            root.GetProperty("command").GetString());
        int query = root.GetProperty("query_tokens").GetInt32();
        Assert.Equal(8, query);
        foreach (var r in root.GetProperty("results").EnumerateArray())
        {
            var runs = r.GetProperty("seconds_runs").EnumerateArray().Select(x => x.GetDouble()).Order().ToArray();
            double seconds = r.GetProperty("seconds").GetDouble();
            Assert.Equal(runs[1], seconds);
            Assert.Equal((r.GetProperty("length").GetInt32() + query) / seconds, r.GetProperty("tokens_per_s").GetDouble(), 9);
        }
    }

    [Fact]
    public void DecodeJsonRecordsTheCommandOnce()
    {
        using var tmp = new TempDir();
        var dir = tmp.File("bench");
        var (code, output, err) = CliRun.Apb("bench", "decode", "--shape", "tiny", "--contexts", "16", "--tokens", "1", "--warmup", "0", "--out", dir);
        Assert.True(code == 0, err + output);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "decode.json")));
        Assert.Equal($"apb bench decode --shape tiny --contexts 16 --tokens 1 --warmup 0 --out {dir}", doc.RootElement.GetProperty("command").GetString());
    }
}
