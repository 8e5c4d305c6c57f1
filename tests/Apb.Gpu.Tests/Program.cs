using System.Diagnostics;
using System.Text.Json;

namespace Apb.Gpu.Tests;

/// <summary>
/// The GPU tests as a Native AOT binary for the GPU machine, which has no .NET:
///   Apb.Gpu.Tests [--filter TEXT]... [--out results.json] [--seed N] [--device N] [--list]
/// runs every case (or those whose "group/name" contains a --filter text), prints one line per case, writes the results
/// as JSON with --out, and ends with "N passed, N failed"; exit status 1 when any case failed or nothing could run.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var filters = new List<string>();
        string? outPath = null;
        int seed = GpuCaseRunner.DefaultSeed, ordinal = 0;
        bool list = false;
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            try
            {
                switch (args[i])
                {
                    case "--filter": filters.AddRange(Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)); break;
                    case "--out": outPath = Value(); break;
                    case "--seed": seed = int.Parse(Value()); break;
                    case "--device": ordinal = int.Parse(Value()); break;
                    case "--list": list = true; break;
                    case "-h" or "--help": Console.WriteLine(Usage); return 0;
                    default: throw new ArgumentException($"unknown argument '{args[i]}'");
                }
            }
            catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
            {
                Console.Error.WriteLine($"error: {e.Message}\n{Usage}");
                return 1;
            }
        }

        var cases = GpuCases.All.Where(c => filters.Count == 0 || filters.Any(f => c.Id.Contains(f, StringComparison.OrdinalIgnoreCase))).ToList();
        if (list)
        {
            foreach (var c in cases) Console.WriteLine(c.Id);
            return 0;
        }
        if (cases.Count == 0)
        {
            Console.Error.WriteLine($"error: no case matches --filter {string.Join(',', filters)} (--list shows the {GpuCases.All.Count} cases)");
            return 1;
        }
        if (GpuDevices.Probe() is { } why)
        {
            Console.Error.WriteLine($"error: {why.TrimEnd('.')}; the GPU tests need an NVIDIA GPU and its driver (`apb doctor` shows what was looked for)");
            return 1;
        }

        using var devices = new GpuDevices(ordinal);
        var dev = devices.Gpu.Context.Device;
        Console.WriteLine($"GPU tests on {devices.Gpu.Name}: {dev.Name} (compute {dev.ComputeCapability}, {devices.Gpu.Context.Arch}), " +
                          $"hopper kernel {(devices.Gpu.HopperAttentionAvailable ? "available" : "not available")}, seed {seed}, {cases.Count} cases");
        var total = Stopwatch.StartNew();
        var results = new List<CaseResult>();
        foreach (var c in cases)
        {
            var r = GpuCaseRunner.Run(c, devices, seed);
            results.Add(r);
            var worst = GpuCaseRunner.Worst(r);
            Console.WriteLine($"{(r.Pass ? "ok  " : "FAIL")} {c.Id,-90} {r.Seconds,7:F2} s  {(worst is null ? "" : GpuCaseRunner.Format(worst))}");
            if (!r.Pass) Console.WriteLine(GpuCaseRunner.Describe(r));
        }

        Console.WriteLine();
        Console.WriteLine($"{"group",-10} {"passed",7} {"failed",7} {"seconds",8}");
        foreach (var g in results.GroupBy(r => r.Case.Group))
            Console.WriteLine($"{g.Key,-10} {g.Count(r => r.Pass),7} {g.Count(r => !r.Pass),7} {g.Sum(r => r.Seconds),8:F1}");
        if (outPath != null) WriteJson(outPath, devices, seed, total.Elapsed.TotalSeconds, results);
        int failed = results.Count(r => !r.Pass);
        Console.WriteLine($"{results.Count - failed} passed, {failed} failed");
        return failed == 0 ? 0 : 1;
    }

    const string Usage = "usage: Apb.Gpu.Tests [--filter TEXT[,TEXT]]... [--out results.json] [--seed N] [--device N] [--list]";

    static void WriteJson(string path, GpuDevices devices, int seed, double seconds, List<CaseResult> results)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null) Directory.CreateDirectory(dir);
        using var fs = File.Create(path);
        using var w = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
        var dev = devices.Gpu.Context.Device;
        w.WriteStartObject();
        w.WriteString("device", dev.Name);
        w.WriteString("compute_capability", dev.ComputeCapability);
        w.WriteString("arch", devices.Gpu.Context.Arch);
        w.WriteBoolean("hopper_kernel", devices.Gpu.HopperAttentionAvailable);
        w.WriteNumber("seed", seed);
        w.WriteNumber("seconds", seconds);
        w.WriteNumber("passed", results.Count(r => r.Pass));
        w.WriteNumber("failed", results.Count(r => !r.Pass));
        w.WriteStartArray("cases");
        foreach (var r in results)
        {
            w.WriteStartObject();
            w.WriteString("group", r.Case.Group); w.WriteString("name", r.Case.Name);
            w.WriteBoolean("pass", r.Pass); w.WriteNumber("seconds", r.Seconds);
            if (r.Error != null) w.WriteString("error", r.Error);
            w.WriteStartArray("checks");
            foreach (var m in r.Measurements)
            {
                w.WriteStartObject();
                w.WriteString("what", m.What); w.WriteString("kernel", m.Kernel);
                if (double.IsFinite(m.Error)) w.WriteNumber("error", m.Error); else w.WriteNull("error");
                w.WriteNumber("limit", m.Limit); w.WriteBoolean("pass", m.Pass); w.WriteString("note", m.Note);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }
}
