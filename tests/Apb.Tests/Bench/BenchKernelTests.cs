using System.Text.Json;
using Apb.Bench.Kernels;
using Apb.Bench.Timing;
using Apb.Tests.Cuda;
using Xunit;

namespace Apb.Tests.Bench;

/// <summary>`apb bench kernel NAME`: the CPU harness end to end at tiny sizes, and the errors a user can meet.</summary>
public class BenchKernelTests
{
    [Fact]
    public void CpuAttentionHarnessChecksTimesAndWritesTheArithmetic()
    {
        using var tmp = new TempDir();
        string json = tmp.File("out/cpu-attention.json"); // its folder is not there yet: the bench creates it
        var (code, output, err) = CliRun.Apb("bench", "kernel", "cpu-attention", "--lengths", "64,128", "--repeats", "2", "--out", json);
        Assert.True(code == 0, err + output);
        Assert.Contains("check causal T=64 h=6/2 d=64 against float64", err);
        Assert.Contains("| cpu-attention | d 128 | T=128 h=6/2 d=128 causal |", output);
        Assert.Contains("ns per pair", output);

        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        var root = doc.RootElement;
        Assert.Equal("cpu-attention", root.GetProperty("harness").GetString());
        Assert.False(root.TryGetProperty("warmup_ms", out _)); // the CPU harnesses time by Stopwatch: no GPU warm-up to report
        Assert.StartsWith("apb bench kernel cpu-attention --lengths 64,128", root.GetProperty("command").GetString());
        Assert.True(root.GetProperty("checks")[0].GetProperty("error").GetDouble() < 1e-5);
        var rows = root.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal([(64, "d 64"), (64, "d 128"), (128, "d 64"), (128, "d 128")],
            rows.Select(r => (r.GetProperty("n").GetInt32(), r.GetProperty("variant").GetString())));
        foreach (var r in rows)
        {
            int t = r.GetProperty("n").GetInt32();
            var runs = r.GetProperty("runs_ms").EnumerateArray().Select(x => x.GetDouble()).Order().ToArray();
            Assert.Equal(2, runs.Length);
            double median = r.GetProperty("median_ms").GetDouble();
            Assert.Equal((runs[0] + runs[1]) / 2, median, 9);
            Assert.Equal(6.0 * t * (t + 1) / 2, r.GetProperty("pairs").GetDouble());
            Assert.Equal(median * 1e-3 / r.GetProperty("pairs").GetDouble() * 1e9, r.GetProperty("ns_per_pair").GetDouble(), 6);
        }
    }

    /// <summary>--rounds: each size's rows timed round after round, one row each in the table and the JSON, its median the rounds' median.</summary>
    [Fact]
    public void RoundsInterleaveTheRowsAndReportTheMedianOfTheRoundMedians()
    {
        using var tmp = new TempDir();
        string json = tmp.File("rounds.json");
        var (code, output, err) = CliRun.Apb("bench", "kernel", "cpu-attention", "--lengths", "64", "--repeats", "2", "--rounds", "3", "--out", json);
        Assert.True(code == 0, err + output);
        Assert.Contains("3 rounds, each size's rows interleaved", output);
        Assert.Contains("| 3 x 2 |", output);
        // The log shows the interleaving: d 64 and d 128 in round 1, then both again in round 2 ...
        var order = err.Split('\n').Where(l => l.Contains("(round ")).Select(l => l.Contains("T=64 h=6/2 d=64 ") ? "64" : "128").ToList();
        Assert.Equal(["64", "128", "64", "128", "64", "128"], order);

        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        Assert.Equal(3, doc.RootElement.GetProperty("rounds").GetInt32());
        var rows = doc.RootElement.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(["d 64", "d 128"], rows.Select(r => r.GetProperty("variant").GetString()));
        foreach (var r in rows)
        {
            var runs = r.GetProperty("runs_ms").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            var medians = r.GetProperty("round_medians_ms").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            Assert.Equal(6, runs.Length);
            Assert.Equal(3, medians.Length);
            for (int i = 0; i < 3; i++) Assert.Equal((runs[2 * i] + runs[2 * i + 1]) / 2, medians[i], 9);
            Assert.Equal(medians.Order().ElementAt(1), r.GetProperty("median_ms").GetDouble(), 9);
            Assert.Equal(runs.Min(), r.GetProperty("min_ms").GetDouble(), 9);
        }
    }

    /// <summary>A variant listed twice stays two rows; a round that lacks a row of the first is a harness bug, said so.</summary>
    [Fact]
    public void MergeKeepsRepeatedVariantsApartAndRefusesRoundsThatDiffer()
    {
        static KernelRow Row(string variant, double ms) =>
            new("k", variant, "s", 1, TimingStats.Of([ms]), new Work(Bound.Memory, 1, "f"));
        var merged = KernelRow.Merge([[Row("a", 1), Row("b", 2), Row("a", 3)], [Row("a", 5), Row("b", 6), Row("a", 7)]]);
        Assert.Equal([("a", 1.0, 5.0), ("b", 2.0, 6.0), ("a", 3.0, 7.0)],
            merged.Select(r => (r.Variant, r.Rounds![0].MedianMs, r.Rounds[1].MedianMs)));
        Assert.Equal(3, merged[0].Time.MedianMs); // the median of 1 and 5
        Assert.Equal("2 x 1", merged[0].RunsText);
        var e = Assert.Throws<InvalidOperationException>(() => KernelRow.Merge([[Row("a", 1), Row("b", 2)], [Row("a", 5)]]));
        Assert.Contains("round 2 has no row k | b | s #1", e.Message);
        Assert.Single(KernelRow.Merge([[Row("a", 1)]]));
    }

    [Fact]
    public void CpuMatMulHarnessChecksBothFormsAndCountsFlops()
    {
        using var tmp = new TempDir();
        string json = tmp.File("cpu-matmul.json");
        var (code, output, err) = CliRun.Apb("bench", "kernel", "cpu-matmul", "--lengths", "2,8", "--repeats", "2", "--out", json);
        Assert.True(code == 0, err + output);
        Assert.Contains("check T=3 K=96 N=200 against float64", err);  // the dot-product form
        Assert.Contains("check T=13 K=96 N=200 against float64", err); // the packed form
        Assert.Contains("| cpu-matmul | down | T=8 K=1024 N=384 bf16 |", output);

        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        var rows = doc.RootElement.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(6, rows.Count);
        foreach (var r in rows)
        {
            Assert.Equal("cpuflops", r.GetProperty("bound").GetString());
            string[] shape = r.GetProperty("shape").GetString()!.Split(' ');
            int t = int.Parse(shape[0][2..]), k = int.Parse(shape[1][2..]), n = int.Parse(shape[2][2..]);
            Assert.Equal(2.0 * t * k * n, r.GetProperty("flops").GetDouble());
            Assert.Equal(r.GetProperty("flops").GetDouble() / (r.GetProperty("median_ms").GetDouble() * 1e-3) / 1e9,
                r.GetProperty("gflops").GetDouble(), 6);
        }
    }

    [Theory]
    [InlineData("attention")]
    [InlineData("decode")]
    [InlineData("gemm")]
    [InlineData("gemv")]
    [InlineData("rms-norm")]
    [InlineData("rope")]
    [InlineData("merge")]
    [InlineData("passing")]
    public void GpuHarnessesSayTheyNeedAGpu(string name)
    {
        if (GpuFactAttribute.Probe() is null) return; // meaningful only where there is no GPU
        var (code, output, err) = CliRun.Apb("bench", "kernel", name, "--lengths", "64");
        Assert.Equal(1, code);
        Assert.Contains($"bench kernel {name} times a CUDA kernel and needs an NVIDIA GPU", err);
        Assert.Equal("", output);
    }

    [Fact]
    public void UnknownHarnessNamesTheOnesThereAre()
    {
        var (code, _, err) = CliRun.Apb("bench", "kernel", "softmax");
        Assert.Equal(1, code);
        Assert.Contains("no kernel harness 'softmax': choose one of attention, decode, gemm, gemv, rms-norm, rope, merge, passing, critical-path, cpu-attention", err);
    }

    [Theory]
    [InlineData("gemm", "--variants", "mma", "bench kernel gemm has no variants to choose")]
    [InlineData("cpu-attention", "--extra-keys", "64", "bench kernel cpu-attention takes no --mask or --extra-keys")]
    [InlineData("cpu-attention", "--mask", "causal", "bench kernel cpu-attention takes no --mask or --extra-keys")]
    public void OptionsAHarnessDoesNotTakeAreRefused(string name, string option, string value, string message)
    {
        var (code, _, err) = CliRun.Apb("bench", "kernel", name, option, value);
        Assert.Equal(1, code);
        Assert.Contains(message, err);
    }

    [Theory]
    [InlineData("--mask", "diagonal", "--mask must be causal, none or both (got 'diagonal')")]
    [InlineData("--device", "cpu", "--device must be cuda or cuda:N (got 'cpu')")]
    [InlineData("--repeats", "0", "--repeats must be at least 1 (got 0)")]
    [InlineData("--warmup-ms", "-1", "--warmup-ms must be >= 0 (got -1)")]
    [InlineData("--rounds", "0", "--rounds must be at least 1 (got 0)")]
    [InlineData("--lengths", "12q", "--lengths '12q' is not a length")]
    public void BadOptionsOfTheAttentionAliasAreNamed(string option, string value, string message)
    {
        var (code, _, err) = CliRun.Apb("bench", "attention", option, value);
        Assert.Equal(1, code);
        Assert.Contains(message, err);
    }
}
