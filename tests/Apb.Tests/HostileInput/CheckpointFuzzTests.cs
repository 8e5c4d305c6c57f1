using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Apb.Tests.Checkpoints;
using Xunit;
using Xunit.Abstractions;

namespace Apb.Tests.HostileInput;

/// <summary>
/// Seeded fuzzing of the CLI: corrupted copies of the small random checkpoint (config.json and generation_config.json
/// fields set to hostile JSON or their bytes broken, safetensors entries with wrong dtypes, shapes and offsets, tensors
/// dropped, renamed or added, files truncated, missing, empty or replaced by folders, a bad shard index, NaN weights) run
/// through inspect, logits, generate and eval with hostile arguments (strategies, rank counts, lengths, ids, texts). Every
/// case runs in-process through the CLI's entry point and must end within a bound, with exit 0, or exit 1 and one error
/// line: never exit 2 (a bug), never a hang, and never more than a bounded amount of memory.
/// </summary>
[Collection(FuzzCollection.Name)]
public class CheckpointFuzzTests(ITestOutputHelper log) : IDisposable
{
    const int Cases = 1000;
    const int Seed = 16_2026;
    static readonly TimeSpan CaseLimit = TimeSpan.FromSeconds(60);
    const long CaseBytes = 256L << 20;

    readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    static string Tiny => Repo.TinyModel;
    // The fixture's weights, read once: most corruptions start from them.
    static readonly byte[] Weights = File.ReadAllBytes(Path.Combine(Tiny, "model.safetensors"));
    static readonly List<TestTensor> Tensors = SafeTensorsWriter.ReadAll(Path.Combine(Tiny, "model.safetensors"));

    static readonly string[] ConfigFields =
    [
        "architectures", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling",
        "rope_parameters", "tie_word_embeddings", "attention_bias", "mlp_bias", "hidden_act", "torch_dtype", "dtype",
        "bos_token_id", "eos_token_id", "use_sliding_window", "layer_types",
    ];
    static readonly string[] RopeFields = ["rope_type", "type", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings", "rope_theta"];
    static readonly string[] RopeTypes = ["\"default\"", "\"linear\"", "\"llama3\"", "\"yarn\"", "\"dynamic\""];
    static readonly string[] GenerationFields = ["eos_token_id", "bos_token_id", "temperature", "top_p", "top_k", "do_sample", "pad_token_id"];
    static readonly string[] DTypes = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "bf16", ""];
    static readonly string[] Files = ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "model.safetensors"];

    static readonly string[] Ids = ["1,2,3", "0", "-1", "639", "640", "1,,2", "x", "2147483648", " ", "1;2", string.Join(",", Enumerable.Range(1, 60))];
    static readonly string[] NewTokens = ["-5", "0", "1", "3", "32768", "2147483647", "-2147483648"];
    static readonly string[] Strategies = ["full", "ring", "zigzag", "ulysses", "star", "apb", "bogus"];
    static readonly string[] Ranks = ["-1", "0", "1", "2", "3", "4", "7", "65", "2147483647"];
    static readonly string[] Lengths = ["-1", "0", "4", "9999", "2147483647"];

    enum Corruption { None, ConfigField, RopeScaling, ConfigBytes, GenerationConfig, TensorEntry, TensorSet, WeightsBytes, Index, FileGone, NanWeights }

    [Fact]
    public async Task CorruptedCheckpointsAndHostileArgumentsExitCleanly()
    {
        var rng = new Random(Seed);
        var outcomes = new SortedDictionary<string, int>();
        var sw = Stopwatch.StartNew();
        long most = 0;
        for (int i = 0; i < Cases; i++)
        {
            string dir = Path.Combine(_tmp.Path, $"case{i:D4}");
            var corruption = (Corruption)rng.Next(Enum.GetValues<Corruption>().Length);
            string what = Corrupt(rng, dir, corruption);
            var args = Command(rng, dir);
            string show = $"case {i} ({what}): apb {HostileValues.Show(args)}";

            long before = GC.GetTotalAllocatedBytes(precise: true);
            var run = Task.Run(() => CliRun.Apb(args));
            if (await Task.WhenAny(run, Task.Delay(CaseLimit)) != run) Assert.Fail($"{show}: did not end within {CaseLimit.TotalSeconds} s");
            long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            most = Math.Max(most, allocated);
            var (code, output, err) = await run;

            Assert.True(code is 0 or 1, $"{show}: exit {code}\n{err}");
            Assert.DoesNotContain("internal error", err);
            Assert.DoesNotContain("   at ", err);
            if (code == 1)
            {
                var errors = err.Split('\n').Count(l => l.StartsWith("error: ", StringComparison.Ordinal));
                // An ApbException prints one "error:" line; a malformed command line is System.CommandLine's error and usage.
                Assert.True(errors == 1 || (errors == 0 && err.Trim().Length > 0 && output.Contains("Usage:")), $"{show}: expected one error line\n{err}");
            }
            Assert.True(allocated < CaseBytes, $"{show}: {allocated / 1e6:F0} MB allocated");
            string key = $"{corruption,-16} {(code == 0 ? "ran" : "refused")}";
            outcomes[key] = outcomes.GetValueOrDefault(key) + 1;
            Directory.Delete(dir, recursive: true);
        }
        foreach (var (k, n) in outcomes) log.WriteLine($"{k} {n,4}");
        log.WriteLine($"{Cases} cases in {sw.Elapsed.TotalSeconds:F1} s; most allocated by one case {most / 1e6:F0} MB");
        int ran = outcomes.Where(o => o.Key.EndsWith("ran")).Sum(o => o.Value);
        // Both sides must be reached: corruptions that are refused, and cases that run to the end.
        Assert.True(ran > Cases / 10 && ran < Cases * 9 / 10, $"{ran} of {Cases} cases ran: the mutations are too mild or too coarse");
    }

    // ---- checkpoint folders ----

    /// <summary>Makes <paramref name="dir"/>: links to the fixture's files, with the corrupted one written in its place.</summary>
    static string Corrupt(Random rng, string dir, Corruption c)
    {
        Directory.CreateDirectory(dir);
        var written = new Dictionary<string, byte[]?>(); // null: leave the file out
        string what = c.ToString();
        switch (c)
        {
            case Corruption.ConfigField:
            {
                string field = rng.Pick(ConfigFields);
                string value = rng.Next(2) == 0 ? rng.Pick(HostileValues.Json) : rng.Pick(HostileValues.Ints).ToString();
                written["config.json"] = Splice(Read("config.json"), o => o[field] = Placeholder, value);
                what += $" {field}={Short(value)}";
                break;
            }
            case Corruption.RopeScaling:
            {
                var fields = RopeFields.Where(_ => rng.Next(2) == 0).ToList();
                var values = fields.Select(f => f is "rope_type" or "type" && rng.Next(3) > 0 ? rng.Pick(RopeTypes)
                    : rng.Next(2) == 0 ? rng.Pick(HostileValues.Json) : rng.Pick(HostileValues.Ints).ToString()).ToList();
                string where = rng.Next(2) == 0 ? "rope_scaling" : "rope_parameters";
                string inner = "{" + string.Join(", ", fields.Select((f, i) => $"\"{f}\": {values[i]}")) + "}";
                written["config.json"] = Splice(Read("config.json"), o => o[where] = Placeholder, inner);
                what += $" {where}={Short(inner)}";
                break;
            }
            case Corruption.ConfigBytes:
                written["config.json"] = HostileValues.MutateBytes(rng, File.ReadAllBytes(Path.Combine(Tiny, "config.json")));
                break;
            case Corruption.GenerationConfig:
            {
                string field = rng.Pick(GenerationFields);
                string value = rng.Next(2) == 0 ? rng.Pick(HostileValues.Json) : rng.Pick(HostileValues.Ints).ToString();
                written["generation_config.json"] = rng.Next(4) == 0
                    ? HostileValues.MutateBytes(rng, File.ReadAllBytes(Path.Combine(Tiny, "generation_config.json")))
                    : Splice(Read("generation_config.json"), o => o[field] = Placeholder, value);
                what += $" {field}={Short(value)}";
                break;
            }
            case Corruption.TensorEntry:
                written["model.safetensors"] = EditHeader(rng, out string edit);
                what += " " + edit;
                break;
            case Corruption.TensorSet:
            {
                var tensors = Tensors.ToList();
                int k = rng.Next(tensors.Count);
                switch (rng.Next(4))
                {
                    case 0: what += $" drop {tensors[k].Name}"; tensors.RemoveAt(k); break;
                    case 1: what += $" rename {tensors[k].Name}"; tensors[k] = tensors[k] with { Name = tensors[k].Name.Replace("layers.", "layers.9") }; break;
                    case 2: what += " extra tensor"; tensors.Add(new TestTensor("model.layers.4.mlp.extra.weight", "BF16", [4], new byte[8])); break;
                    default: what += $" retype {tensors[k].Name}"; tensors[k] = tensors[k] with { DType = tensors[k].DType == "BF16" ? "F16" : "I16" }; break;
                }
                SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
                written["model.safetensors"] = null;
                break;
            }
            case Corruption.WeightsBytes:
            {
                var bytes = (byte[])Weights.Clone();
                int headerEnd = 8 + (int)BinaryPrimitives.ReadInt64LittleEndian(bytes);
                switch (rng.Next(3))
                {
                    case 0: what += " truncated"; bytes = bytes[..rng.Next(rng.Next(2) == 0 ? headerEnd + 16 : bytes.Length)]; break;
                    case 1: what += " header bytes"; for (int n = rng.Next(1, 4); n > 0; n--) bytes[8 + rng.Next(headerEnd - 8)] ^= (byte)(1 << rng.Next(8)); break;
                    default: what += " length field"; BinaryPrimitives.WriteInt64LittleEndian(bytes, rng.Pick(HostileValues.Ints) * rng.Next(1, 1000)); break;
                }
                written["model.safetensors"] = bytes;
                break;
            }
            case Corruption.Index:
            {
                var names = Tensors.Select(t => t.Name).ToList();
                var map = new JsonObject();
                foreach (var n in names) map[n] = "model.safetensors";
                string index = new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map }.ToJsonString();
                string name = rng.Pick(names);
                string value = rng.Pick(["\"../model.safetensors\"", "\"\"", "\"missing.safetensors\"", "\"/etc/passwd\"", "5", "null", "\"model.safetensors\""]);
                index = index.Replace($"\"{name}\":\"model.safetensors\"", $"\"{name}\":{value}");
                if (rng.Next(4) == 0) index = index.Replace($"\"{names[0]}\":\"model.safetensors\",", ""); // a tensor the index leaves out
                written["model.safetensors.index.json"] = rng.Next(5) == 0 ? HostileValues.MutateBytes(rng, Encoding.UTF8.GetBytes(index)) : Encoding.UTF8.GetBytes(index);
                what += $" {Short(name)}={value}";
                break;
            }
            case Corruption.FileGone:
            {
                string file = rng.Pick(Files);
                switch (rng.Next(3))
                {
                    case 0: written[file] = null; what += $" {file} missing"; break;
                    case 1: written[file] = []; what += $" {file} empty"; break;
                    default: Directory.CreateDirectory(Path.Combine(dir, file)); written[file] = null; what += $" {file} is a folder"; break;
                }
                break;
            }
            case Corruption.NanWeights:
            {
                var tensors = Tensors.ToList();
                int k = rng.Next(tensors.Count);
                byte hi = rng.Next(2) == 0 ? (byte)0x7F : (byte)0xFF, lo = rng.Next(2) == 0 ? (byte)0xC0 : (byte)0x80; // NaN, +-Inf in bf16
                var data = (byte[])tensors[k].Data.Clone();
                for (int j = 0; j + 1 < data.Length; j += 2 * rng.Next(1, 64)) { data[j] = lo; data[j + 1] = hi; }
                tensors[k] = tensors[k] with { Data = data };
                SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
                written["model.safetensors"] = null;
                what += $" in {tensors[k].Name}";
                break;
            }
        }
        foreach (var f in Directory.GetFiles(Tiny))
        {
            string name = Path.GetFileName(f), target = Path.Combine(dir, name);
            if (written.ContainsKey(name) || Directory.Exists(target) || File.Exists(target)) continue;
            File.CreateSymbolicLink(target, f);
        }
        foreach (var (name, bytes) in written)
            if (bytes != null) File.WriteAllBytes(Path.Combine(dir, name), bytes);
        return what;
    }

    const string Placeholder = "\u0001hostile\u0001";

    static JsonObject Read(string file) => JsonFiles.Read(Path.Combine(Tiny, file));

    /// <summary>The object with one field set to raw JSON text (which may be invalid Unicode, so no JSON writer sees it).</summary>
    static byte[] Splice(JsonObject o, Action<JsonObject> set, string raw)
    {
        set(o);
        string text = o.ToJsonString().Replace("\"\\u0001hostile\\u0001\"", raw);
        return Encoding.UTF8.GetBytes(text);
    }

    /// <summary>The fixture's weights with one header entry's dtype, shape or offsets changed; the data stays as it is.</summary>
    static byte[] EditHeader(Random rng, out string edit)
    {
        var bytes = Weights;
        int n = (int)BinaryPrimitives.ReadInt64LittleEndian(bytes);
        var header = JsonNode.Parse(bytes.AsSpan(8, n))!.AsObject();
        var names = header.Select(p => p.Key).Where(k => k != "__metadata__").ToList();
        string name = rng.Pick(names);
        var entry = header[name]!.AsObject();
        string raw;
        switch (rng.Next(4))
        {
            case 0:
                raw = $"\"{rng.Pick(DTypes)}\"";
                entry["dtype"] = Placeholder;
                edit = $"{name}.dtype={raw}";
                break;
            case 1:
            {
                var shape = entry["shape"]!.AsArray().Select(x => (long)x!).ToList();
                int d = rng.Next(shape.Count + 1);
                if (d == shape.Count || rng.Next(4) == 0) shape.Insert(rng.Next(shape.Count + 1), rng.Pick(HostileValues.Ints));
                else shape[d] = rng.Next(2) == 0 ? shape[d] * rng.Next(0, 3) + rng.Next(-1, 2) : rng.Pick(HostileValues.Ints);
                raw = "[" + string.Join(", ", shape) + "]";
                entry["shape"] = Placeholder;
                edit = $"{name}.shape={raw}";
                break;
            }
            case 2:
            {
                var off = entry["data_offsets"]!.AsArray().Select(x => (long)x!).ToArray();
                off[rng.Next(2)] += rng.Pick(new long[] { -2, -1, 1, 2, 1 << 20, -(1L << 40) });
                raw = $"[{off[0]}, {off[1]}]";
                entry["data_offsets"] = Placeholder;
                edit = $"{name}.data_offsets={raw}";
                break;
            }
            default:
                raw = rng.Pick(HostileValues.Json);
                string field = rng.Pick(["dtype", "shape", "data_offsets"]);
                entry[field] = Placeholder;
                edit = $"{name}.{field}={Short(raw)}";
                break;
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString().Replace("\"\\u0001hostile\\u0001\"", raw));
        var result = new byte[8 + json.Length + (bytes.Length - 8 - n)];
        BinaryPrimitives.WriteInt64LittleEndian(result, json.Length);
        json.CopyTo(result, 8);
        bytes.AsSpan(8 + n).CopyTo(result.AsSpan(8 + json.Length));
        return result;
    }

    static string Short(string s) => s.Length > 40 ? s[..37] + "..." : s;

    // ---- command lines ----

    static string[] Command(Random rng, string dir)
    {
        var a = new List<string>();
        switch (rng.Next(20))
        {
            case < 4: a.AddRange(["inspect", "--model", dir]); return a.ToArray();
            case < 7: a.AddRange(["logits", "--model", dir, "--ids", rng.Pick(Ids)]); break;
            case < 9:
                a.AddRange(["logits", "--model", dir, "--prompt", rng.Pick(HostileValues.Texts)]);
                if (rng.Next(2) == 0) a.AddRange(["--query", rng.Pick(HostileValues.Texts), "--anchor-insert-at", rng.Pick(Lengths)]);
                break;
            case 9:
                a.AddRange(["eval", "ruler", "--model", dir, "--tasks", rng.Pick(["niah_single_1", "vt", "bogus"]), "--length", rng.Pick(["300", "1k", "0", "x", "100000"]),
                    "--samples", rng.Pick(["1", "0", "2147483647"]), "--strategies", rng.Pick(["full", "star,apb", "ring", "nope"]), "--ranks", rng.Pick(Ranks)]);
                return a.ToArray();
            default:
                a.AddRange(["generate", "--model", dir, "--prompt", rng.Pick(HostileValues.Texts), "-n", rng.Next(2) == 0 ? "2" : rng.Pick(NewTokens),
                    "--chat", rng.Pick(["true", "false"])]);
                if (rng.Next(4) == 0) a.AddRange(["-t", rng.Pick(["0", "0.7", "-1", "1e308"]), "--top-p", rng.Pick(["1", "0.5", "0", "2"]), "--top-k", rng.Pick(["0", "5", "-3"])]);
                break;
        }
        if (rng.Next(3) == 0)
            a.AddRange(rng.Pick<string[]>([["--strategy", "ring", "--ranks", "2"], ["--strategy", "zigzag", "--ranks", "2"], ["--strategy", "ulysses", "--ranks", "2"],
                ["--strategy", "star", "--ranks", "2", "--fallback-below", "0"], ["--strategy", "apb", "--ranks", "2", "--fallback-below", "0"]]));
        else if (rng.Next(2) == 0)
        {
            a.AddRange(["--strategy", rng.Pick(Strategies), "--ranks", rng.Pick(Ranks)]);
            if (rng.Next(2) == 0) a.AddRange(["--fallback-below", rng.Pick(["0", "-1", "100000"])]);
            if (rng.Next(3) == 0) a.AddRange(["--anchor", rng.Pick(Lengths)]);
            if (rng.Next(3) == 0) a.AddRange(["--passing", rng.Pick(Lengths)]);
            if (rng.Next(4) == 0) a.AddRange(["--scorer", rng.Pick(["query", "retaining", "nope"])]);
            if (rng.Next(6) == 0) a.AddRange(["--retaining-heads", Path.Combine(dir, rng.Pick(["model.safetensors", "nothing.safetensors", "config.json"]))]);
            if (rng.Next(4) == 0) a.Add("--timings");
        }
        return a.ToArray();
    }
}
