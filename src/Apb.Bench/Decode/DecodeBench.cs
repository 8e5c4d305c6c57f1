using System.Diagnostics;
using System.Text.Json;
using Apb.Backends;
using Apb.Backends.Cuda;
using Apb.Bench.Timing;
using Apb.Engine;
using Apb.Checkpoints;
using Apb.Model;
using Apb.Runtime;
using static Apb.Bench.Markdown;

namespace Apb.Bench.Decode;

/// <summary>What `apb bench decode` was asked to run.</summary>
public sealed record DecodeSettings
{
    public string? Shape { get; init; }
    public string? Model { get; init; }
    /// <summary>The device as the user named it, for the report.</summary>
    public required string Device { get; init; }
    public required Func<IBackend> NewBackend { get; init; }
    public required int[] Contexts { get; init; }
    /// <summary>Timed decode steps per context (median reported).</summary>
    public int Tokens { get; init; } = 32;
    public int Warmup { get; init; } = 4;
    /// <summary>KV cache dtypes to time, each on its own session of the same prompt (--kv-cache-dtype auto,fp8).</summary>
    public KvCacheDType[] KvCaches { get; init; } = [KvCacheDType.Auto];
    /// <summary>HBM TB/s for the memory floor: an assumed ~90% of the H200's 4.8 TB/s, not measured here.</summary>
    public double BandwidthTbs { get; init; } = 4.3;
    public ulong Seed { get; init; } = 1;
    /// <summary>Folder for decode.json (none: the table only).</summary>
    public string? Out { get; init; }
    public required string CommandLine { get; init; }
}

/// <summary>
/// Milliseconds per greedy decode step after a prompt of each context length, on one device (bench/peers/hf_decode.py
/// measures Hugging Face's and writes the same JSON fields). The prefill is not timed. Each step is LocalSession.Decode
/// (one token through the model, the logits downloaded: the stream is drained) plus the host argmax, timed by a
/// stopwatch, after untimed warm-up steps. On CUDA the steps run twice on the same cache: with the split-KV decode
/// kernel and with the prefill kernel. The floor is the bytes a step must read (bf16 weights except the embedding
/// table, plus the whole KV cache) over the HBM bandwidth.
/// </summary>
public sealed class DecodeBench(DecodeSettings o, TextWriter output, TextWriter log)
{
    sealed record Result(int Context, string Attention, string Status, string? Note, double[] StepMs, double PrefillSeconds, double FloorMs, double PeakGiB,
        double[]? HostMs = null, IReadOnlyList<(string Name, long Count, double Ms)>? Kernels = null)
    {
        public double Median => Stats.Median(StepMs);
        /// <summary>Median of each step's wall time less the time the host waited on the device: the host's own share.</summary>
        public double HostMedian => HostMs is { Length: > 0 } h ? Stats.Median(h) : double.NaN;
    }

    readonly List<Result> _results = [];
    readonly Stopwatch _clock = Stopwatch.StartNew();
    ModelConfig _config = null!;
    string _modelName = "";
    bool _onDevice;
    string _launches = "";

    void Log(string line) { log.WriteLine($"[bench decode {_clock.Elapsed.TotalSeconds,6:F1}s] {line}"); log.Flush(); }

    /// <summary>Every context in turn; 1 when any ended in an error (an out-of-memory context is reported, not an error).</summary>
    public int Run()
    {
        using var backend = o.NewBackend();
        var cuda = backend as CudaBackend;
        _onDevice = cuda != null;
        // Programmatic launch (APB_PDL) changes a step's time by its launch gaps: the title says which ran.
        if (cuda != null) _launches = (cuda.Context.ProgrammaticLaunch ? ", programmatic launches" : ", plain launches (APB_PDL=0 or no sm_90)") +
            (cuda.StepGraphs ? $", steps replayed as CUDA graphs in up to {cuda.StepGraphSegments} segments (APB_DECODE_GRAPH=1)" : "");
        var model = BenchModel.Open(o.Shape, o.Model, backend, o.Seed, cpu: !_onDevice);
        using var _ = model.Bundle;
        (_config, _modelName) = (model.Config, model.Name);
        Log($"{_modelName}: {Count(_config.ParameterCount)} parameters on {backend.Name}; {o.Tokens} timed steps after {o.Warmup} warm-up per context");

        foreach (int n in o.Contexts)
        {
            try
            {
                foreach (var kv in o.KvCaches)
                {
                    // Each cache's own peak: the first cache's session is given back before the next one starts.
                    backend.ResetPeakMemory();
                    Context(backend, cuda, model.Weights, n, kv);
                }
            }
            catch (ApbException e)
            {
                bool oom = DeviceOutOfMemoryException.In(e);
                _results.Add(new Result(n, "-", oom ? "oom" : "error", e.Message, [], 0, FloorMs(n), 0));
                Log($"n={n}: {(oom ? "oom" : "error")}: {e.Message}");
            }
            Write();
        }
        Print();
        return _results.Any(r => r.Status == "error") ? 1 : 0;
    }

    void Context(IBackend backend, CudaBackend? cuda, LlamaWeights weights, int n, KvCacheDType kv)
    {
        // An fp8 cache has one decode path (its own kernel), so no prefill-kernel row.
        bool fp8 = kv != KvCacheDType.Auto;
        int variants = cuda != null && !fp8 ? 2 : 1;
        // Both given back when the context is done (an error included): the cache and the activations.
        using var model = new LlamaModel(_config, weights, backend);
        using var session = new LocalSession(model, n + variants * (o.Warmup + o.Tokens) + 1, kvDType: kv);
        var rng = BenchModel.CaseRandom(o.Seed, n);
        var prompt = Enumerable.Range(0, n).Select(_ => rng.Next(_config.VocabSize)).ToArray();
        var sw = Stopwatch.StartNew();
        int next = Sampler.ArgMax(session.Prefill(prompt, []));
        double prefill = sw.Elapsed.TotalSeconds;
        Log($"n={n}: prefill {prefill:F2} s (not timed)");

        // The same cache for both variants: the second decodes a few tokens further (2 x (warmup + tokens) at most).
        // On CUDA the decode kernel and, for comparison, the prefill kernel (mma.sync: what Auto picks for one row
        // without the decode kernel); the prefill above ran with the backend's own choice.
        var names = fp8 ? new[] { cuda != null ? "split-kv fp8" : $"{backend.Name} fp8" }
            : cuda != null ? new[] { "split-kv", "prefill-kernel" } : new[] { backend.Name };
        var kernels = new[] { AttentionKernel.SplitKv, AttentionKernel.TensorCore };
        var saved = cuda?.AttentionKernel;
        try
        {
            for (int v = 0; v < names.Length; v++)
            {
                if (cuda != null) cuda.AttentionKernel = kernels[v];
                for (int i = 0; i < o.Warmup; i++) next = Sampler.ArgMax(session.Decode(next));
                var ms = new double[o.Tokens];
                var host = new double[o.Tokens];
                cuda?.Context.Times?.Reset(); // APB_KERNEL_TIMES=1: the timed steps' kernels only
                for (int i = 0; i < o.Tokens; i++)
                {
                    double waited = cuda?.Context.WaitedMs ?? 0;
                    sw.Restart();
                    next = Sampler.ArgMax(session.Decode(next)); // Decode downloads the logits: the device is done
                    ms[i] = sw.Elapsed.TotalMilliseconds;
                    host[i] = ms[i] - ((cuda?.Context.WaitedMs ?? 0) - waited);
                }
                double peak = cuda != null ? backend.Memory.PeakBytes / (double)(1L << 30) : 0;
                var r = new Result(n, names[v], "ok", null, ms, prefill, FloorMs(n, kv), peak, cuda != null ? host : null, cuda?.Context.Times?.Totals());
                _results.Add(r);
                // The floor is HBM bandwidth's: a CPU run has none to hold it against.
                Log($"n={n} {names[v]}: {r.Median:F2} ms/token median ({1000 / r.Median:F1} tok/s, host {F(r.HostMedian, "F2")} ms of it)" +
                    (double.IsFinite(r.FloorMs) ? $", floor {F(r.FloorMs, "F2")} ms ({F(r.FloorMs / r.Median, "P0")} of it)" : "") +
                    (cuda is { StepGraphs: true } && cuda.StepGraphCounts is var g ? $", step graph: {g.Segments} segment(s), {g.Instantiations} instantiation(s), {g.Replays} replays so far" : ""));
            }
        }
        finally
        {
            if (cuda != null) cuda.AttentionKernel = saved!.Value;
        }
    }

    /// <summary>
    /// Bytes one step must read: every bf16 weight but the embedding table (one row of it), and the KV cache (bf16, or
    /// fp8 codes and their scales).
    /// </summary>
    double FloorBytes(int n, KvCacheDType kvDType)
    {
        var c = _config;
        long weights = 2L * (c.ParameterCount - (c.TieWordEmbeddings ? 0 : (long)c.VocabSize * c.HiddenSize));
        long row = kvDType == KvCacheDType.Fp8 ? CudaBackend.Fp8RowBytes(c.KvDim) : c.KvDim * 2L;
        long kv = 2L * c.NumHiddenLayers * n * row;
        return weights + kv;
    }

    /// <summary>The memory floor, for an HBM device only: NaN on the CPU (written as null / '-').</summary>
    double FloorMs(int n, KvCacheDType kvDType = KvCacheDType.Auto) => _onDevice ? FloorBytes(n, kvDType) / (o.BandwidthTbs * 1e12) * 1e3 : double.NaN;

    void Print()
    {
        output.WriteLine($"## apb bench decode: {_modelName}, {o.Tokens} steps after {o.Warmup} warm-up, {o.Device}{_launches}");
        output.WriteLine();
        output.WriteLine("| engine | attention | context | ms/token (median) | min | host ms | tok/s | floor ms | floor fraction | prefill s | peak GiB | note |");
        output.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in _results)
        {
            if (r.Status != "ok") { output.WriteLine($"| apb | {r.Attention} | {r.Context} | {r.Status} | - | - | - | {F(r.FloorMs, "F2")} | - | - | - | {Cell(r.Note)} |"); continue; }
            output.WriteLine($"| apb | {r.Attention} | {r.Context} | {F(r.Median, "F2")} | {F(r.StepMs.Min(), "F2")} | {F(r.HostMedian, "F2")} | {F(1000 / r.Median, "F1")} | {F(r.FloorMs, "F2")} | " +
                             $"{F(r.FloorMs / r.Median, "F2")} | {F(r.PrefillSeconds, "F2")} | {F(r.PeakGiB, "F1")} | |");
        }
        output.WriteLine();
        if (_onDevice)
            output.WriteLine("host ms: a step's wall time less the time the host waited on the device (the step's queueing; near the wall time, the step is bound by the host's launches).");
        foreach (var r in _results.Where(r => r.Kernels is { Count: > 0 }))
            PrintKernels(r);
        output.WriteLine(_onDevice
            ? $"floor: bf16 weights except the embedding table + the whole KV cache (bf16, or fp8 codes + scales), read once per step at {o.BandwidthTbs} TB/s."
            : "floor: GPU runs only (the bytes a step reads over HBM bandwidth; a CPU has no such bound here).");
    }

    /// <summary>APB_KERNEL_TIMES=1: each kernel's device time per step, against the step's wall time.</summary>
    void PrintKernels(Result r)
    {
        double steps = r.StepMs.Length, sum = r.Kernels!.Sum(k => k.Ms) / steps;
        output.WriteLine($"### kernels of a step: {r.Attention}, context {r.Context} (APB_KERNEL_TIMES=1; each launch between two events, so no overlap)");
        output.WriteLine();
        output.WriteLine("| kernel | launches per step | us per step | us per launch | share of kernel time |");
        output.WriteLine("|---|---|---|---|---|");
        foreach (var (name, count, ms) in r.Kernels!)
            output.WriteLine($"| {name} | {count / steps:F0} | {1000 * ms / steps:F1} | {1000 * ms / count:F2} | {ms / steps / sum:P1} |");
        output.WriteLine($"| all kernels | {r.Kernels!.Sum(k => k.Count) / steps:F0} | {1000 * sum:F1} | | step {r.Median:F3} ms (median, timer on) |");
        output.WriteLine();
    }

    void Write()
    {
        if (o.Out is null) return;
        Directory.CreateDirectory(o.Out);
        using var fs = File.Create(Path.Combine(o.Out, "decode.json"));
        using var w = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("engine", "apb");
        w.WriteString("command", o.CommandLine);
        w.WriteString("model", _modelName);
        w.WriteString("device", o.Device);
        w.WriteNumber("tokens", o.Tokens);
        w.WriteNumber("warmup", o.Warmup);
        w.WriteNumber("bandwidth_tbs", o.BandwidthTbs);
        w.WriteStartArray("results");
        foreach (var r in _results)
        {
            w.WriteStartObject();
            w.WriteNumber("context", r.Context);
            w.WriteString("attention", r.Attention);
            w.WriteString("status", r.Status);
            if (r.Note != null) w.WriteString("note", r.Note);
            if (double.IsFinite(r.FloorMs)) w.WriteNumber("floor_ms", r.FloorMs); else w.WriteNull("floor_ms");
            if (r.StepMs.Length > 0)
            {
                w.WriteNumber("ms_per_token", r.Median);
                w.WriteStartArray("ms_runs");
                foreach (var x in r.StepMs) w.WriteNumberValue(x);
                w.WriteEndArray();
                w.WriteNumber("tokens_per_s", 1000 / r.Median);
                if (double.IsFinite(r.HostMedian)) w.WriteNumber("host_ms", r.HostMedian); else w.WriteNull("host_ms");
                if (double.IsFinite(r.FloorMs)) w.WriteNumber("floor_fraction", r.FloorMs / r.Median); else w.WriteNull("floor_fraction");
                w.WriteNumber("prefill_s", r.PrefillSeconds);
                w.WriteNumber("peak_gib", r.PeakGiB);
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }
}
