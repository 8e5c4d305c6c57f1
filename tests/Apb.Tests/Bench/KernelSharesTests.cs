using System.Text.Json;
using Apb.Backends.Cpu;
using Apb.Bench.Prefill;
using Apb.Bench.Timing;
using Apb.Model;
using Apb.Strategies;
using Xunit;

namespace Apb.Tests.Bench;

/// <summary>
/// APB_KERNEL_TIMES=1 in `apb bench prefill`: device time split into attention, matrix products and the rest (issue
/// #19 asks a prefill to report the rest). The device side needs a GPU; the split and the report are checked here on
/// a case built by hand.
/// </summary>
public class KernelSharesTests
{
    [Theory]
    [InlineData("apb_attention_hopper_d128", KernelShares.Kind.Attention)]
    [InlineData("apb_attention_hopper_chunk_d64", KernelShares.Kind.Attention)]
    [InlineData("apb_attention_mma2_d128", KernelShares.Kind.Attention)]
    [InlineData("apb_decode3_split_d128_p8", KernelShares.Kind.Attention)]
    [InlineData("apb_decode_merge", KernelShares.Kind.Attention)]
    [InlineData("cublasLtMatmul", KernelShares.Kind.Products)]
    [InlineData("apb_gemv_gated_m1", KernelShares.Kind.Products)]
    [InlineData("apb_attention_hopper_qk8_chunk_d128", KernelShares.Kind.Attention)]
    [InlineData("apb_transpose_v", KernelShares.Kind.Other)]
    // QK8's quantizers prepare the attention's operands, as the V transpose does: the rest, which #19 wants near zero.
    [InlineData("apb_qk8_quantize_key_tiles", KernelShares.Kind.Other)]
    [InlineData("apb_silu_mul", KernelShares.Kind.Other)]
    [InlineData("apb_add_rms_norm_v4", KernelShares.Kind.Other)]
    [InlineData("apb_merge_attention", KernelShares.Kind.Other)]
    public void EachKernelHasItsKind(string kernel, KernelShares.Kind kind) => Assert.Equal(kind, KernelShares.Of(kernel));

    static readonly (string, long, double)[] TwoRuns =
    [
        ("apb_attention_hopper_d128", 64, 140.0), ("cublasLtMatmul", 448, 60.0), ("apb_silu_mul", 64, 6.0),
        ("apb_transpose_v", 64, 2.0), ("apb_add_rms_norm_v4", 128, 4.0), ("apb_rope", 128, 8.0),
    ];

    [Fact]
    public void SplitAddsEachKindsMilliseconds()
    {
        var ms = KernelShares.Split(TwoRuns);
        Assert.Equal([140.0, 60.0, 20.0], ms);
    }

    [Fact]
    public void ThePrefillReportShowsTheSplitPerPrefillAndTheLargestOtherKernels()
    {
        var settings = new PrefillSettings
        {
            Strategies = [StrategyKind.Full], Lengths = [1024], Device = "cuda", NewBackend = () => new CpuBackend(),
            Out = "unused", CommandLine = "apb bench prefill",
        };
        var timed = new PrefillCase { Strategy = "full", Length = 1024, Ranks = 1, Seconds = [0.25, 0.26], Kernels = TwoRuns };
        var untimed = new PrefillCase { Strategy = "full", Length = 2048, Ranks = 1, Seconds = [0.5] };
        var report = new PrefillReport(settings, "tiny", ModelShapes.Get("tiny"), "H200", 1, onDevice: true, [timed, untimed]);

        string md = report.Markdown();
        // Per prefill: the sums over the two timed runs, halved.
        Assert.Contains("| full | 1024 | 70.0 | 30.0 | 10.0 | 9.1 % | apb_rope 4.0, apb_silu_mul 3.0, apb_add_rms_norm_v4 2.0, apb_transpose_v 1.0 |", md);
        Assert.DoesNotContain("| full | 2048 | ", md.Split("### device time")[1]);

        using var tmp = new TempDir();
        report.Write(tmp.Path);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(tmp.Path, "prefill.json")));
        var results = doc.RootElement.GetProperty("results");
        var k = results[0].GetProperty("kernel_ms_per_prefill");
        Assert.Equal(10.0, k.GetProperty("other").GetDouble(), 9);
        Assert.Equal("attention", k.GetProperty("kernels")[0].GetProperty("kind").GetString());
        Assert.Equal(224, k.GetProperty("kernels")[1].GetProperty("launches").GetDouble());
        Assert.False(results[1].TryGetProperty("kernel_ms_per_prefill", out _));
    }
}
