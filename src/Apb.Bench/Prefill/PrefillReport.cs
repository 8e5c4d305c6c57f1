using System.Text;
using System.Text.Json;
using Apb.Bench.Timing;
using Apb.Diagnostics;
using Apb.Checkpoints;
using Apb.Model;
using Apb.Strategies;
using static Apb.Bench.Markdown;

namespace Apb.Bench.Prefill;

/// <summary>
/// prefill.md and prefill.json of a run so far. "seconds" is the median of "seconds_runs", and "tokens_per_s" is
/// (length + query_tokens) / seconds: the tokens one prefill takes in, context and query.
/// </summary>
/// <param name="fp8Attention">whether the GPU computed Q K^T in e4m3 (--prefill-attention fp8, or APB_ATTENTION_QK_FP8=1)</param>
public sealed class PrefillReport(PrefillSettings o, string modelName, ModelConfig config, string device, int worldSize, bool onDevice,
    IReadOnlyList<PrefillCase> results, bool fp8Attention = false)
{
    int Tokens(PrefillCase r) => r.Length + o.QueryTokens;

    static bool Exact(string s) => s is "full" or "ring" or "zigzag" or "ulysses";

    /// <summary>The FLOP floor: exact strategies on a GPU only (a CPU has no bf16 peak to hold them against).</summary>
    double? FloorSeconds(PrefillCase r) => Exact(r.Strategy) && onDevice
        ? PrefillArithmetic.ExactFlops(config, Tokens(r)) / (r.Ranks * o.PeakTflops * 1e12) : null;

    static int Slowest(double[][] p) => Enumerable.Range(0, p.Length).MaxBy(r => p[r][Profile.Phases.Length]);

    static int CommIndex => Array.IndexOf(Profile.Phases, "communication");

    static IEnumerable<double> Totals(double[][] p) => p.Select(x => x[Profile.Phases.Length]);
    static IEnumerable<double> Busy(double[][] p) => p.Select(x => x[Profile.Phases.Length] - x[CommIndex]);

    /// <summary>
    /// Link bytes per byte the communicator counted: in-process ranks count 4 per element, a GPU group sends bf16 (2);
    /// processes under apb launch count what they send.
    /// </summary>
    double SentBytesScale => worldSize == 1 && onDevice ? 0.5 : 1;

    PrefillModel Model(double[][] p) => PrefillModel.From(p, o.LinkGBps, SentBytesScale);

    static int Column(string name) => RankProfileTable.Columns.ToList().IndexOf(name);
    static readonly int HostMb = Column("host MB"), LayerHostMb = Column("layer host MB");

    static string PhaseNames => string.Join(" / ", Profile.Phases.Select(ph => ph switch { "communication" => "comm", "attention" => "attn", _ => ph }));

    public string Markdown()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"## apb bench prefill: {modelName}, query {o.QueryTokens} tokens, {device}, transfer overlap {(StrategyOptions.OverlapFromEnvironment ? "on" : "off (APB_OVERLAP=0)")}" +
            (fp8Attention ? ", " + Backends.Qk8.Label : ""));
        sb.AppendLine();
        sb.AppendLine($"| strategy | context | ranks | APB lengths | prefill s (median, runs) | tok/s | floor fraction | slowest rank ms: {PhaseNames} | rank totals ms | imbalance total (busy) | peak GiB per rank | note |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in results)
        {
            if (r.Status != "ok")
            {
                sb.AppendLine($"| {r.Strategy} | {r.Length} | {r.Ranks} | {r.Plan ?? "-"} | {r.Status} | - | - | - | - | - | - | {Cell(r.Note)} |");
                continue;
            }
            double med = r.Median;
            string floor = FloorSeconds(r) is double fl ? F(fl / med, "F2") : "-";
            string phases = "-", totals = "-", imbalance = "-";
            if (r.Profiles is { } p)
            {
                int slow = Slowest(p);
                phases = $"r{slow}: " + string.Join(" / ", Enumerable.Range(0, Profile.Phases.Length).Select(i => F(p[slow][i], "F0")));
                totals = string.Join(" / ", Totals(p).Select(x => F(x, "F0")));
                imbalance = $"{F(Stats.Imbalance(Totals(p)), "F2")} ({F(Stats.Imbalance(Busy(p)), "F2")})";
            }
            string peak = r.PeakGiB is { } pk ? string.Join(" / ", pk.Select(x => F(x, "F1"))) : "-";
            sb.AppendLine($"| {r.Strategy} | {r.Length} | {r.Ranks} | {r.Plan ?? "-"} | {F(med)} ({r.Seconds.Count}) | {F(Tokens(r) / med, "F0")} | {floor} | {phases} | {totals} | {imbalance} | {peak} | {Cell(r.Note)} |");
        }
        sb.AppendLine();
        sb.AppendLine((onDevice
                          ? $"floor fraction: exact strategies only, {o.PeakTflops:F0} TFLOP/s per GPU x ranks against 2 x parameters x tokens + causal attention FLOPs. "
                          : "floor fraction: GPU runs only (a GPU's bf16 peak against 2 x parameters x tokens + causal attention FLOPs; a CPU has no such peak here). ") +
                      "Busy = total minus communication (which includes waiting for peers). Phase times come from a separate instrumented run (synchronized at phase edges); the timed runs are not instrumented.");
        KernelSection(sb);
        var modeled = results.Where(r => r.Status == "ok" && r.Profiles is { Length: > 1 }).ToList();
        if (modeled.Count == 0) return sb.ToString();
        sb.AppendLine();
        sb.AppendLine($"### per-rank phases and the modeled multi-GPU prefill (link {F(o.LinkGBps, "F0")} GB/s per direction)");
        sb.AppendLine();
        sb.AppendLine("| strategy | context | ranks | per rank ms: scoring / selection / comm / attn / ffn | (scoring + selection) / attn, worst rank | slowest busy ms | transfer ms | modeled s (serial) | modeled s (overlapped) | host MB in layers, max |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in modeled)
        {
            var p = r.Profiles!;
            var m = Model(p);
            string ranks = string.Join("; ", p.Select((x, i) => $"r{i}: {PrefillModel.RankPhases(x)}"));
            sb.AppendLine($"| {r.Strategy} | {r.Length} | {r.Ranks} | {ranks} | {(m.WorstMachineryShare is double w ? F(w, "F3") : "-")} | {F(m.BusyMs, "F0")} | {F(m.TransferMs, "F1")} | {F(m.Seconds)} | {F(m.OverlappedSeconds)} | {F(p.Max(x => x[LayerHostMb]), "F3")} |");
        }
        sb.AppendLine();
        sb.AppendLine($"modeled: the slowest rank's busy time plus the most MB any rank sends or receives at the link rate{(SentBytesScale != 1 ? " (in-process ranks count 4 bytes per element; a GPU sends bf16, so half)" : "")}; " +
                      "serial hides no transfer behind compute, overlapped hides all of it. In-process ranks share one GPU, so their busy times are each rank's own work, measured in turn.");
        return sb.ToString();
    }

    /// <summary>
    /// APB_KERNEL_TIMES=1: per case, rank 0's device time per prefill split into attention, matrix products and the
    /// rest (<see cref="KernelShares"/>), with the rest's largest kernels named: where a prefill's time goes that has no
    /// FLOP floor.
    /// </summary>
    void KernelSection(StringBuilder sb)
    {
        var timed = results.Where(r => r.Status == "ok" && r.KernelRuns > 0).ToList();
        if (timed.Count == 0) return;
        sb.AppendLine();
        sb.AppendLine("### device time per prefill by kind of kernel (rank 0; APB_KERNEL_TIMES=1: each launch between two events, so the timed runs above ran slower)");
        sb.AppendLine();
        sb.AppendLine("| strategy | context | attention ms | matrix products ms | other ms | other, share of kernel time | largest other kernels, ms |");
        sb.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var r in timed)
        {
            double runs = r.KernelRuns;
            var ms = KernelShares.Split(r.Kernels!);
            string largest = string.Join(", ", r.Kernels!.Where(k => KernelShares.Of(k.Name) == KernelShares.Kind.Other)
                .OrderByDescending(k => k.Ms).Take(4).Select(k => $"{k.Name} {F(k.Ms / runs, "F1")}"));
            sb.AppendLine($"| {r.Strategy} | {r.Length} | {F(ms[0] / runs, "F1")} | {F(ms[1] / runs, "F1")} | {F(ms[2] / runs, "F1")} | " +
                          $"{F(ms[2] / ms.Sum(), "P1")} | {(largest.Length > 0 ? largest : "-")} |");
        }
    }

    /// <summary>Writes prefill.md and prefill.json into <paramref name="dir"/> (created when missing).</summary>
    public void Write(string dir)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "prefill.md"), Markdown());
        using var fs = File.Create(Path.Combine(dir, "prefill.json"));
        using var w = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
        var c = config;
        w.WriteStartObject();
        w.WriteString("command", o.CommandLine);
        w.WriteString("model", modelName);
        w.WriteStartObject("shape");
        w.WriteNumber("layers", c.NumHiddenLayers); w.WriteNumber("hidden", c.HiddenSize); w.WriteNumber("heads", c.NumAttentionHeads);
        w.WriteNumber("kv_heads", c.NumKeyValueHeads); w.WriteNumber("head_dim", c.HeadDim); w.WriteNumber("intermediate", c.IntermediateSize);
        w.WriteNumber("vocab", c.VocabSize); w.WriteNumber("parameters", c.ParameterCount);
        w.WriteEndObject();
        w.WriteString("device", device);
        w.WriteNumber("world_size", worldSize);
        w.WriteNumber("query_tokens", o.QueryTokens);
        w.WriteBoolean("overlap", StrategyOptions.OverlapFromEnvironment);
        w.WriteString("prefill_attention", fp8Attention ? "fp8" : "bf16");
        w.WriteNumber("warmup", o.Warmup); w.WriteNumber("repeats", o.Repeats); w.WriteNumber("repeat_budget_s", o.RepeatBudget);
        w.WriteNumber("peak_tflops", o.PeakTflops);
        w.WriteStartArray("phases");
        foreach (var ph in Profile.Phases) w.WriteStringValue(ph);
        w.WriteEndArray();
        w.WriteStartArray("results");
        foreach (var r in results)
        {
            w.WriteStartObject();
            w.WriteString("strategy", r.Strategy); w.WriteNumber("length", r.Length); w.WriteNumber("ranks", r.Ranks);
            w.WriteString("status", r.Status);
            if (r.Note != null) w.WriteString("note", r.Note);
            if (r.Plan != null) w.WriteString("plan", r.Plan);
            if (r.NeedGiB is double need) w.WriteNumber("predicted_need_gib", Math.Round(need, 2));
            if (r.Seconds.Count > 0)
            {
                w.WriteNumber("seconds", r.Median);
                Array("seconds_runs", r.Seconds);
                w.WriteNumber("tokens_per_s", Tokens(r) / r.Median);
                if (FloorSeconds(r) is double fl) { w.WriteNumber("floor_seconds", fl); w.WriteNumber("floor_fraction", fl / r.Median); }
            }
            if (r.RankSeconds is { } rs) Array("rank_seconds", rs);
            if (r.KernelRuns > 0 && r.Kernels is { } kernels)
            {
                // Rank 0's device time per prefill (APB_KERNEL_TIMES=1), per kernel and by kind.
                double runs = r.KernelRuns;
                var split = KernelShares.Split(kernels);
                w.WriteStartObject("kernel_ms_per_prefill");
                w.WriteNumber("attention", split[0] / runs); w.WriteNumber("products", split[1] / runs); w.WriteNumber("other", split[2] / runs);
                w.WriteStartArray("kernels");
                foreach (var (name, count, ms) in kernels)
                {
                    w.WriteStartObject();
                    w.WriteString("name", name); w.WriteNumber("launches", count / runs); w.WriteNumber("ms", ms / runs);
                    w.WriteString("kind", KernelShares.Of(name).ToString().ToLowerInvariant());
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            if (r.PeakGiB is { } pk) Array("peak_gib", pk);
            if (r.Profiles is { } p)
            {
                int slow = Slowest(p);
                w.WriteStartObject("profile");
                w.WriteNumber("slowest_rank", slow);
                w.WriteStartObject("slowest_phases_ms");
                for (int i = 0; i < Profile.Phases.Length; i++) w.WriteNumber(Profile.Phases[i], p[slow][i]);
                w.WriteEndObject();
                Array("rank_total_ms", Totals(p));
                Array("rank_busy_ms", Busy(p));
                Array("rank_sent_mb", p.Select(x => x[Profile.Phases.Length + 1]));
                Array("rank_attention_gflop", p.Select(x => x[Profile.Phases.Length + 3]));
                w.WriteNumber("imbalance", Stats.Imbalance(Totals(p)));
                w.WriteNumber("busy_imbalance", Stats.Imbalance(Busy(p)));
                Array("rank_host_mb", p.Select(x => x[HostMb]));
                Array("rank_layer_host_mb", p.Select(x => x[LayerHostMb]));
                if (p.Length > 1)
                {
                    var m = Model(p);
                    w.WriteStartObject("modeled");
                    w.WriteNumber("link_gbps", m.LinkGBps);
                    w.WriteNumber("sent_bytes_scale", SentBytesScale);
                    w.WriteNumber("busy_ms", m.BusyMs);
                    w.WriteNumber("transfer_ms", m.TransferMs);
                    w.WriteNumber("seconds", m.Seconds);
                    w.WriteNumber("overlapped_seconds", m.OverlappedSeconds);
                    Array("machinery_over_attention", m.MachineryOverAttention);
                    w.WriteEndObject();
                }
                w.WriteStartArray("rank_phases_ms");
                foreach (var x in p)
                {
                    w.WriteStartArray();
                    for (int i = 0; i < Profile.Phases.Length; i++) w.WriteNumberValue(x[i]);
                    w.WriteEndArray();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();

        void Array(string name, IEnumerable<double> xs)
        {
            w.WriteStartArray(name);
            foreach (var x in xs) w.WriteNumberValue(double.IsFinite(x) ? x : 0);
            w.WriteEndArray();
        }
    }
}
