using System.Text.Encodings.Web;
using System.Text.Json;
using static Apb.Bench.Markdown;

namespace Apb.Bench.Kernels;

/// <summary>
/// `apb bench kernel NAME`: the harness's correctness check, then each size timed; a markdown table and one line of
/// arithmetic per row on the output, JSON with --out.
/// </summary>
public static class KernelBench
{
    public static int Run(KernelBenchSettings settings, TextWriter output, TextWriter log)
    {
        var harness = KernelHarnesses.Find(settings.Name);
        var sizes = settings.Sizes ?? harness.DefaultSizes;
        if (settings.Variants != null && !harness.HasVariants)
            throw new ApbException($"bench kernel {harness.Name} has no variants to choose: --variants is for attention and decode");
        if ((settings.Masks != null || settings.ExtraKeys != 0) && !harness.HasMasks)
            throw new ApbException($"bench kernel {harness.Name} takes no --mask or --extra-keys: they are for attention");
        using var ctx = KernelBenchContext.Open(harness, settings, log);
        log.WriteLine($"bench kernel {harness.Name} on {ctx.DeviceName}: {harness.Summary}");
        harness.Check(ctx);
        var rows = new List<KernelRow>();
        foreach (int size in sizes)
        {
            var rounds = new List<IReadOnlyList<KernelRow>>();
            for (int round = 1; round <= settings.Rounds; round++)
            {
                var got = new List<KernelRow>();
                foreach (var row in harness.Time(ctx, size))
                {
                    got.Add(row);
                    string of = settings.Rounds > 1 ? $" (round {round} of {settings.Rounds})" : "";
                    log.WriteLine($"  {row.Kernel} {row.Variant} {row.Shape}{of}: {row.Time.MedianMs:F3} ms median of {row.Time.RunsMs.Length}, {F(row.Rate, "F2")} {row.RateUnit}");
                }
                rounds.Add(got);
            }
            rows.AddRange(KernelRow.Merge(rounds));
        }

        output.WriteLine($"## apb bench kernel {harness.Name}: {ctx.DeviceName}");
        output.WriteLine();
        if (settings.Rounds > 1)
            output.WriteLine($"{settings.Rounds} rounds, each size's rows interleaved: median ms is the median of a row's {settings.Rounds} round medians, runs is rounds x calls");
        output.WriteLine("| kernel | variant | shape | median ms | min ms | runs | rate | of peak |");
        output.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (var r in rows)
            output.WriteLine($"| {r.Kernel} | {r.Variant} | {Cell(r.Shape)} | {F(r.Time.MedianMs)} | {F(r.MinMs)} | {r.RunsText} | {F(r.Rate, "F2")} {r.RateUnit} | {r.OfPeak} |");
        output.WriteLine();
        foreach (var r in rows) output.WriteLine($"{r.Kernel} {r.Variant} {r.Shape}: {r.Arithmetic}");
        if (settings.Out is { } path)
        {
            Write(path, settings, harness, ctx, rows);
            output.WriteLine($"wrote {path}");
        }
        return 0;
    }

    static void Write(string path, KernelBenchSettings settings, KernelHarness harness, KernelBenchContext ctx, List<KernelRow> rows)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null) Directory.CreateDirectory(dir);
        using var fs = File.Create(path);
        using var w = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        w.WriteStartObject();
        w.WriteString("harness", harness.Name);
        w.WriteString("command", settings.CommandLine);
        w.WriteString("device", ctx.DeviceName);
        if (harness.NeedsGpu) w.WriteNumber("warmup_ms", settings.WarmupMs);
        w.WriteNumber("rounds", settings.Rounds);
        if (settings.Variants is [var only]) w.WriteString("kernel", only);
        w.WriteStartArray("checks");
        foreach (var c in ctx.Checks)
        {
            w.WriteStartObject();
            w.WriteString("what", c.What); Number("error", c.Error); Number("limit", c.Limit);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("results");
        foreach (var r in rows)
        {
            w.WriteStartObject();
            w.WriteString("kernel", r.Kernel); w.WriteString("variant", r.Variant); w.WriteString("shape", r.Shape);
            w.WriteNumber("n", r.Size);
            Number("median_ms", r.Time.MedianMs); Number("min_ms", r.MinMs);
            // Every timed call; with rounds, round after round (round_medians_ms: each round's median, whose median is median_ms).
            w.WriteStartArray("runs_ms");
            foreach (var x in r.Rounds?.SelectMany(t => t.RunsMs) ?? r.Time.RunsMs) w.WriteNumberValue(x);
            w.WriteEndArray();
            if (r.Rounds != null)
            {
                w.WriteStartArray("round_medians_ms");
                foreach (var x in r.Time.RunsMs) w.WriteNumberValue(x);
                w.WriteEndArray();
            }
            w.WriteString("bound", r.Work.Bound.ToString().ToLowerInvariant());
            w.WriteString("formula", r.Work.Formula);
            switch (r.Work.Bound)
            {
                case Bound.Compute:
                    Number("flops", r.Work.Amount); Number("tflops", r.Rate);
                    Number("fraction_of_spec", r.OfSpec); Number("fraction_of_achievable", r.OfAchievable);
                    break;
                case Bound.Memory:
                    Number("bytes", r.Work.Amount); Number("tb_per_s", r.Rate); Number("fraction_of_hbm", r.OfSpec);
                    break;
                case Bound.CpuFlops:
                    Number("flops", r.Work.Amount); Number("gflops", r.Rate);
                    break;
                default:
                    Number("pairs", r.Work.Amount); Number("ns_per_pair", r.Rate);
                    Number("gflops", r.Work.Flops / (r.Time.MedianMs * 1e-3) / 1e9);
                    break;
            }
            w.WriteString("arithmetic", r.Arithmetic);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();

        // JSON has no NaN or infinity (a zero-time run would give one): null instead.
        void Number(string name, double x)
        {
            if (double.IsFinite(x)) w.WriteNumber(name, x); else w.WriteNull(name);
        }
    }
}
