using System.Diagnostics;
using System.Numerics.Tensors;
using Apb.Checkpoints;
using Apb.Bench.Prefill;

namespace Apb.Bench;

/// <summary>
/// What a CPU bench refuses before it builds anything: a random-weight shape whose fp32 weights do not fit this
/// machine's memory (the llama-3.1-8b default needs 32 GB), and prefill cases that could not finish within
/// <see cref="MaxPredictedSeconds"/> even at the machine's best vector rate. Either would otherwise run silently for
/// minutes and then fail, or for hours.
/// </summary>
public static class CpuLimits
{
    /// <summary>A run predicted to take longer than this at the best-case rate is refused (2 hours).</summary>
    public const double MaxPredictedSeconds = 7200;

    const string Hint = "use --shape tiny (or a small --model) and lengths such as --lengths 1k,4k, or --device cuda";

    /// <summary>The CPU backend keeps fp32 weights: 4 bytes a parameter, refused past 80% of the memory .NET may use here.</summary>
    public static void CheckWeights(ModelConfig c, string name)
    {
        long need = c.ParameterCount * 4L, have = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (need > have * 0.8)
            throw new ApbException($"{name} on the CPU needs {need / 1e9:F1} GB for its fp32 weights alone ({Markdown.Count(c.ParameterCount)} parameters x 4 bytes), " +
                $"but this machine offers {have / 1e9:F1} GB: {Hint}");
    }

    /// <summary>
    /// Refuses a prefill run whose exact-attention FLOPs (every length x strategy, warm-up and repeats included) need
    /// more than <see cref="MaxPredictedSeconds"/> at <paramref name="gflops"/>: a lower bound on the real time, since
    /// that rate is what a vector loop in cache reaches, not a whole forward pass.
    /// </summary>
    public static void CheckPrefillTime(ModelConfig c, string name, PrefillSettings o, double gflops)
    {
        int runs = o.Warmup + o.Repeats + (o.Profile ? 1 : 0);
        double flops = o.Lengths.Sum(n => PrefillArithmetic.ExactFlops(c, n + (long)o.QueryTokens)) * o.Strategies.Length * runs;
        double seconds = flops / (gflops * 1e9);
        if (seconds > MaxPredictedSeconds)
            throw new ApbException($"{name} at --lengths {string.Join(",", o.Lengths)} x {o.Strategies.Length} strategies x {runs} runs is {flops:0.0e+00} FLOPs: " +
                $"at least {Progress.Duration(seconds)} on this CPU (its best vector rate, measured now: {gflops:F0} GFLOP/s on {Environment.ProcessorCount} cores), " +
                $"past the {Progress.Duration(MaxPredictedSeconds)} a CPU bench may take: {Hint}");
    }

    /// <summary>
    /// GFLOP/s of fused multiply-adds over two 16 KiB vectors in cache, on every core at once (about 50 ms): an upper
    /// bound on what the CPU backend's kernels reach.
    /// </summary>
    public static double MeasureGflops()
    {
        const int n = 4096;
        var a = new float[n]; var b = new float[n];
        for (int i = 0; i < n; i++) { a[i] = i % 7; b[i] = i % 5; }
        var sw = Stopwatch.StartNew();
        long calls = 0;
        float sink = 0;
        while (sw.ElapsedMilliseconds < 50)
        {
            for (int k = 0; k < 256; k++) sink += TensorPrimitives.Dot(a, b);
            calls += 256;
        }
        GC.KeepAlive(sink);
        return 2.0 * n * calls / sw.Elapsed.TotalSeconds / 1e9 * Environment.ProcessorCount;
    }
}
