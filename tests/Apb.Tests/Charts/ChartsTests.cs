using Apb.Charts;
using SkiaSharp;
using Xunit;

namespace Apb.Tests.Charts;

/// <summary>`apb-charts ruler|prefill`: PNGs from the committed result files and from tiny hand-made JSON; bad input.</summary>
public sealed class ChartsTests : IDisposable
{
    readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    static string PrefillRun => Path.Combine(Repo.Root, "bench", "results", "prefill-20261128-135235");

    string Temp(string name) => _tmp.File(name);

    string WriteJson(string name, string json) { var p = Temp(name); File.WriteAllText(p, json); return p; }

    /// <summary>A real PNG of the chart size, with more than one colour in it (bars/lines/text drawn, not a blank canvas).</summary>
    static void AssertChartPng(string path)
    {
        Assert.True(File.Exists(path), $"{path} was not written");
        var bytes = File.ReadAllBytes(path);
        Assert.True(bytes.Length > 1000, $"{path}: only {bytes.Length} bytes");
        Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }, bytes[..8]);
        using var bmp = SKBitmap.Decode(bytes);
        Assert.NotNull(bmp);
        Assert.Equal((ChartsCli.Width, ChartsCli.Height), (bmp.Width, bmp.Height));
        var colours = new HashSet<uint>();
        for (int y = 0; y < bmp.Height; y += 7)
            for (int x = 0; x < bmp.Width; x += 7)
                colours.Add((uint)bmp.GetPixel(x, y));
        Assert.True(colours.Count >= 4, $"{path}: {colours.Count} distinct colours");
    }

    [Fact]
    public void RulerChartOfTheCommittedEmbeddedModelResults()
    {
        var output = Temp("ruler.png");
        var (code, stdout, stderr) = CliRun.Charts("ruler", "--json", Path.Combine(Repo.EmbeddedModel, "ruler_1k.json"), "--out", output);
        Assert.True(code == 0, stderr);
        Assert.Contains("wrote", stdout);
        AssertChartPng(output);
        Assert.False(File.Exists(RulerChart.ByLengthPath(output)), "one length: no by-length chart");
    }

    [Fact]
    public void RulerChartOfSeveralLengthsAlsoWritesTheByLengthChart()
    {
        var a = WriteJson("a.json", """
            {"results": [
              {"strategy": "apb", "ranks": 4, "length": 4096, "task": "niah_single_1", "accuracy": 1, "samples": 2},
              {"strategy": "apb", "ranks": 4, "length": 4096, "task": "vt", "accuracy": 0.5, "samples": 2},
              {"strategy": "apb", "ranks": 4, "length": 16384, "task": "niah_single_1", "accuracy": 0.5, "samples": 2},
              {"strategy": "apb", "ranks": 4, "length": 16384, "task": "vt", "accuracy": 0, "samples": 2}
            ]}
            """);
        var b = WriteJson("b.json", """
            {"results": [
              {"strategy": "full", "ranks": 1, "length": 4096, "task": "niah_single_1", "accuracy": 1, "samples": 2, "seconds": 1.5},
              {"strategy": "full", "ranks": 1, "length": 16384, "task": "niah_single_1", "accuracy": 1, "samples": 2, "seconds": 3}
            ]}
            """);
        var output = Temp("tiny-ruler.png");
        var (code, stdout, stderr) = CliRun.Charts("ruler", "--json", a, "--json", b, "--out", output);
        Assert.True(code == 0, stderr);
        AssertChartPng(output);
        Assert.Equal(Temp("tiny-ruler-by-length.png"), RulerChart.ByLengthPath(output));
        AssertChartPng(Temp("tiny-ruler-by-length.png"));
        Assert.Contains("tiny-ruler-by-length.png", stdout);
    }

    [Fact]
    public void ARulerFileFromARunThatStoppedEarlyIsChartedWithANote()
    {
        var partial = WriteJson("partial.json", """
            {"complete": false, "results": [
              {"strategy": "full", "ranks": 1, "length": 4096, "task": "niah_single_1", "accuracy": 1, "samples": 2}
            ]}
            """);
        var done = WriteJson("done.json", """
            {"complete": true, "results": [
              {"strategy": "apb", "ranks": 4, "length": 4096, "task": "niah_single_1", "accuracy": 0.5, "samples": 2}
            ]}
            """);
        var output = Temp("partial-ruler.png");
        var (code, _, stderr) = CliRun.Charts("ruler", "--json", partial, "--json", done, "--out", output);
        Assert.True(code == 0, stderr);
        AssertChartPng(output);
        Assert.Contains($"note: {partial} is from a run that stopped early (complete: false): 1 row(s)", stderr);
        Assert.DoesNotContain("done.json", stderr);
    }

    [Fact]
    public void RulerSeriesAreKeptApartByVariantFromTheFileOrFromTheArgument()
    {
        var query = WriteJson("query.json", """
            {"results": [
              {"strategy": "full", "ranks": 1, "length": 4096, "task": "vt", "accuracy": 1, "samples": 2},
              {"strategy": "apb", "ranks": 4, "length": 4096, "task": "vt", "accuracy": 0.5, "samples": 2}
            ]}
            """);
        var retaining = WriteJson("retaining.json", """
            {"results": [{"strategy": "apb", "ranks": 4, "length": 4096, "task": "vt", "accuracy": 1, "samples": 2}]}
            """);
        var named = WriteJson("named.json", """
            {"results": [{"strategy": "apb", "ranks": 4, "length": 4096, "task": "vt", "accuracy": 0.75, "samples": 2, "variant": "l_p 1024"}]}
            """);
        var rows = ResultFiles.LoadRuler([query, retaining + "=retaining heads", named + "=ignored: the file names its own"]);
        Assert.Equal(new string?[] { null, null, "retaining heads", "l_p 1024" }, rows.Select(r => r.Variant));
        Assert.Null(rows[0].Variant); // full never takes a label

        var output = Temp("variants.png");
        var (code, _, stderr) = CliRun.Charts("ruler", "--json", query, "--json", retaining + "=retaining heads", "--json", named, "--out", output);
        Assert.True(code == 0, stderr);
        AssertChartPng(output);

        var (bad, _, err) = CliRun.Charts("ruler", "--json", retaining + "=", "--out", Temp("x.png"));
        Assert.Equal(1, bad);
        Assert.Contains("empty variant", err);
    }

    [Fact]
    public void PrefillChartOfTheCommittedBenchRunFilesAndFolder()
    {
        var output = Temp("prefill.png");
        var (code, _, stderr) = CliRun.Charts("prefill", "--json", Path.Combine(PrefillRun, "gpu1-prefill.json"),
            "--json", Path.Combine(PrefillRun, "gpu2-prefill.json"), "--json", Path.Combine(PrefillRun, "hf.json"), "--out", output);
        Assert.True(code == 0, stderr);
        AssertChartPng(output);

        var data = ResultFiles.LoadPrefill([PrefillRun], TextWriter.Null); // the folder: the kernel files are skipped
        Assert.Equal(24.3387869, data.Points.Single(p => p.Series == "full x1" && p.Length == 131072).Seconds, 6);
        Assert.Equal(12.451663970947266, data.Points.Single(p => p.Series == "zigzag x2" && p.Length == 131072).Seconds, 6);
        Assert.True(data.Points.Single(p => p.Series.StartsWith("HF", StringComparison.Ordinal) && p.Length == 32768).Peer);
        Assert.Equal(3 + 5 + 4 + 3, data.Points.Count); // full 3 lengths, 2-GPU 5 at 128K + 4 at 64K, HF 3
        Assert.Equal(["NVIDIA H200"], data.Devices);
    }

    [Fact]
    public void PrefillChartOfTinyHandMadeFilesSkipsUnmeasuredCases()
    {
        var ours = WriteJson("ours.json", """
            {"model": "tiny", "device": "CPU", "world_size": 2, "query_tokens": 8, "results": [
              {"strategy": "apb", "length": 1024, "ranks": 2, "status": "ok", "seconds": 0.5},
              {"strategy": "apb", "length": 4096, "ranks": 2, "status": "ok", "seconds": 2.5},
              {"strategy": "ring", "length": 4096, "ranks": 2, "status": "skipped", "note": "too big"}
            ]}
            """);
        var peer = WriteJson("peer.json", """
            {"peer": "hf_transformers_sdpa", "device": "CPU", "results": [
              {"length": 1024, "status": "ok", "seconds": 0.4}, {"length": 4096, "status": "oom"}
            ]}
            """);
        var output = Temp("tiny-prefill.png");
        var (code, _, stderr) = CliRun.Charts("prefill", "--json", ours, "--json", peer, "--out", output);
        Assert.True(code == 0, stderr);
        AssertChartPng(output);
        var data = ResultFiles.LoadPrefill([ours, peer]);
        Assert.Equal(3, data.Points.Count);
    }

    [Theory]
    [InlineData("missing")]
    [InlineData("not-json")]
    [InlineData("no-results")]
    [InlineData("ruler-as-prefill")]
    [InlineData("prefill-as-ruler")]
    [InlineData("no-out")]
    [InlineData("unknown-kind")]
    public void BadInputIsOneErrorLineAndExitCodeOne(string kind)
    {
        var ruler = Path.Combine(Repo.EmbeddedModel, "ruler_1k.json");
        var prefill = Path.Combine(PrefillRun, "hf.json");
        var output = Temp("bad.png");
        string[] args = kind switch
        {
            "missing" => ["ruler", "--json", Temp("nope.json"), "--out", output],
            "not-json" => ["ruler", "--json", WriteJson("x.json", "{\"results\": [ oops"), "--out", output],
            "no-results" => ["prefill", "--json", WriteJson("y.json", "{\"rows\": []}"), "--out", output],
            "ruler-as-prefill" => ["prefill", "--json", ruler, "--out", output],
            "prefill-as-ruler" => ["ruler", "--json", prefill, "--out", output],
            "no-out" => ["ruler", "--json", ruler],
            _ => ["pie", "--json", ruler, "--out", output],
        };
        var (code, _, stderr) = CliRun.Charts(args);
        Assert.Equal(1, code);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("apb-charts: ", lines[0]);
        Assert.False(File.Exists(output));
        if (kind == "missing") Assert.Contains("file not found", lines[0]);
    }
}
