using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Apb.Backends;
using Apb.Backends.Cuda;
using Apb.Checkpoints;
using Apb.Engine;
using Apb.Model;
using Apb.Runtime;

namespace Apb.Cli.Commands;

/// <summary>
/// `apb bench decode`: milliseconds per greedy decode step after a prompt of each context length, on one device (the
/// issue's "decode ms/token at 32K and 128K vs Hugging Face"; bench/peers/hf_decode.py measures the peer and writes the
/// same JSON fields). The prefill is not timed. Each step is LocalSession.Decode (one token through the model, the
/// logits downloaded: the stream is drained) plus the host argmax, timed by a stopwatch, after untimed warm-up steps.
/// On CUDA the steps run twice on the same cache: with the split-KV decode kernel and with the prefill kernel.
/// The floor is the bytes a step must read (bf16 weights except the embedding table, plus the whole KV cache) over the
/// HBM bandwidth.
/// </summary>
static partial class BenchCommand
{
    static Command DecodeCommand(Io io)
    {
        var shape = ShapeOption();
        var model = ModelOption();
        var device = CommonOptions.Device();
        var contexts = new Option<string>("--contexts") { Description = "prompt lengths before decoding, e.g. 32k,128k", DefaultValueFactory = _ => "32k,128k" };
        var tokens = new Option<int>("--tokens", "-n") { Description = "timed decode steps per context (median reported)", DefaultValueFactory = _ => 32 };
        var warmup = new Option<int>("--warmup") { Description = "untimed decode steps before the timed ones", DefaultValueFactory = _ => 4 };
        var bandwidth = new Option<double>("--bandwidth-tbs") { Description = "HBM TB/s for the memory floor (default 4.3: an assumed ~90% of the H200's 4.8 TB/s peak, not measured here)", DefaultValueFactory = _ => 4.3 };
        var seed = new Option<ulong>("--seed") { Description = "weights and prompt ids", DefaultValueFactory = _ => 1 };
        var output = new Option<string?>("--out", "-o") { Description = "folder for decode.json" };
        var cmd = new Command("decode", "decode ms/token after a prompt of each context length (prefill untimed), against the memory floor")
        {
            shape, model, device, contexts, tokens, warmup, bandwidth, seed, output,
        };
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            var bench = new DecodeBench(io, r.GetValue(device)!, [.. Eval.SampleGenerator.ParseLengths(r.GetValue(contexts)!, "--contexts")], Math.Max(1, r.GetValue(tokens)),
                Math.Max(0, r.GetValue(warmup)), r.GetValue(bandwidth), r.GetValue(seed), r.GetValue(output),
                "apb " + string.Join(' ', r.Tokens.Select(t => t.Value)));
            return bench.Run(r.GetValue(shape), r.GetValue(model));
        }));
        return cmd;
    }

    sealed record DecodeResult(int Context, string Attention, string Status, string? Note, double[] StepMs, double PrefillSeconds, double FloorMs, double PeakGiB)
    {
        public double Median => BenchCommand.Median(StepMs);
    }

    sealed class DecodeBench(Io io, string device, int[] contexts, int tokens, int warmup, double bandwidthTbs, ulong seed, string? outDir, string commandLine)
    {
        readonly List<DecodeResult> _results = [];
        readonly Stopwatch _clock = Stopwatch.StartNew();
        ModelConfig _config = null!;
        string _modelName = "";

        void Log(string line) { io.Err.WriteLine($"[bench decode {_clock.Elapsed.TotalSeconds,6:F1}s] {line}"); io.Err.Flush(); }

        public int Run(string? shape, string? modelDir)
        {
            using var backend = CommonOptions.Backend(device);
            var cuda = backend as CudaBackend;
            var (bundle, config, weights, name) = OpenModel(shape, modelDir, backend, seed);
            using var _ = bundle;
            (_config, _modelName) = (config, name);
            Log($"{_modelName}: {_config.ParameterCount / 1e9:F2}B parameters on {backend.Name}; {tokens} timed steps after {warmup} warm-up per context");

            foreach (int n in contexts)
            {
                long mark = cuda?.Pool.Mark() ?? 0;
                cuda?.Pool.ResetPeak();
                try
                {
                    Context(backend, cuda, weights, n);
                }
                catch (ApbException e)
                {
                    bool oom = Backends.Cuda.DeviceOutOfMemoryException.In(e);
                    _results.Add(new DecodeResult(n, "-", oom ? "oom" : "error", e.Message, [], 0, FloorMs(n), 0));
                    Log($"n={n}: {(oom ? "oom" : "error")}: {e.Message}");
                }
                finally
                {
                    // The session is dropped, not disposed: its caches and workspaces go back to the pool here.
                    cuda?.Pool.ReleaseSince(mark);
                }
                Write();
            }
            Print();
            return _results.Any(r => r.Status == "error") ? 1 : 0;
        }

        void Context(IBackend backend, CudaBackend? cuda, LlamaWeights weights, int n)
        {
            int variants = cuda != null ? 2 : 1;
            var session = new LocalSession(new LlamaModel(_config, weights, backend), n + variants * (warmup + tokens) + 1);
            var rng = CaseRandom(seed, n);
            var prompt = Enumerable.Range(0, n).Select(_ => rng.Next(_config.VocabSize)).ToArray();
            var sw = Stopwatch.StartNew();
            int next = Sampler.ArgMax(session.Prefill(prompt, []));
            double prefill = sw.Elapsed.TotalSeconds;
            Log($"n={n}: prefill {prefill:F2} s (not timed)");

            // The same cache for both variants: the second decodes a few tokens further (2 x (warmup + tokens) at most).
            // On CUDA the decode kernel and, for comparison, the prefill kernel (mma.sync: what Auto picks for one row
            // without the decode kernel); the prefill above ran with the backend's own choice.
            var names = cuda != null ? new[] { "split-kv", "prefill-kernel" } : new[] { backend.Name };
            var kernels = new[] { AttentionKernel.SplitKv, AttentionKernel.TensorCore };
            var saved = cuda?.AttentionKernel;
            try
            {
                for (int v = 0; v < names.Length; v++)
                {
                    if (cuda != null) cuda.AttentionKernel = kernels[v];
                    for (int i = 0; i < warmup; i++) next = Sampler.ArgMax(session.Decode(next));
                    var ms = new double[tokens];
                    for (int i = 0; i < tokens; i++)
                    {
                        sw.Restart();
                        next = Sampler.ArgMax(session.Decode(next)); // Decode downloads the logits: the device is done
                        ms[i] = sw.Elapsed.TotalMilliseconds;
                    }
                    double peak = cuda != null ? cuda.Pool.PeakBytes / (double)(1L << 30) : 0;
                    var r = new DecodeResult(n, names[v], "ok", null, ms, prefill, FloorMs(n), peak);
                    _results.Add(r);
                    Log($"n={n} {names[v]}: {r.Median:F2} ms/token median ({1000 / r.Median:F1} tok/s), floor {r.FloorMs:F2} ms ({r.FloorMs / r.Median:P0} of it)");
                }
            }
            finally
            {
                if (cuda != null) cuda.AttentionKernel = saved!.Value;
            }
        }

        /// <summary>Bytes one step must read: every bf16 weight but the embedding table (one row of it), and the KV cache.</summary>
        double FloorBytes(int n)
        {
            var c = _config;
            long weights = 2L * (c.ParameterCount - (c.TieWordEmbeddings ? 0 : (long)c.VocabSize * c.HiddenSize));
            long kv = 2L * c.NumHiddenLayers * n * c.KvDim * 2;
            return weights + kv;
        }

        // HBM bandwidth means nothing on the CPU: no floor there (NaN, written as null / '-').
        // A memory floor only means something for an HBM device.
        double FloorMs(int n) => CommonOptions.CudaOrdinal(device) != null ? FloorBytes(n) / (bandwidthTbs * 1e12) * 1e3 : double.NaN;

        void Print()
        {
            var o = io.Out;
            o.WriteLine($"## apb bench decode: {_modelName}, {tokens} steps after {warmup} warm-up, {device}");
            o.WriteLine();
            o.WriteLine("| engine | attention | context | ms/token (median) | min | tok/s | floor ms | floor fraction | prefill s | peak GiB | note |");
            o.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|");
            foreach (var r in _results)
            {
                if (r.Status != "ok") { o.WriteLine($"| apb | {r.Attention} | {r.Context} | {r.Status} | - | - | {F(r.FloorMs)} | - | - | - | {Md(r.Note)} |"); continue; }
                o.WriteLine($"| apb | {r.Attention} | {r.Context} | {r.Median:F2} | {r.StepMs.Min():F2} | {1000 / r.Median:F1} | {F(r.FloorMs)} | {F(r.FloorMs / r.Median)} | {r.PrefillSeconds:F2} | {r.PeakGiB:F1} | |");
            }
            o.WriteLine();
            static string F(double x) => double.IsFinite(x) ? x.ToString("F2", Inv) : "-";
            o.WriteLine($"floor: bf16 weights except the embedding table + the whole KV cache, read once per step at {bandwidthTbs} TB/s.");
        }

        void Write()
        {
            if (outDir is null) return;
            Directory.CreateDirectory(outDir);
            using var fs = File.Create(Path.Combine(outDir, "decode.json"));
            using var w = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
            w.WriteStartObject();
            w.WriteString("engine", "apb");
            w.WriteString("command", commandLine);
            w.WriteString("model", _modelName);
            w.WriteString("device", device);
            w.WriteNumber("tokens", tokens);
            w.WriteNumber("warmup", warmup);
            w.WriteNumber("bandwidth_tbs", bandwidthTbs);
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
}
