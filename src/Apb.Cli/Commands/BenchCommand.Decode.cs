using System.CommandLine;
using Apb.Bench.Decode;

namespace Apb.Cli.Commands;

static partial class BenchCommand
{
    /// <summary>`apb bench decode`: ms/token after a prompt of each context length (Apb.Bench.Decode.DecodeBench).</summary>
    static Command DecodeCommand(Io io)
    {
        var shape = ShapeOption();
        var model = ModelOption();
        var device = CommonOptions.Device();
        var contexts = CommonOptions.Lengths("prompt lengths before decoding", "32k,128k");
        var tokens = new Option<int>("--tokens", "-n") { Description = "timed decode steps per context (median reported)", DefaultValueFactory = _ => 32 };
        var warmup = new Option<int>("--warmup") { Description = "untimed decode steps before the timed ones", DefaultValueFactory = _ => 4 };
        var bandwidth = new Option<double>("--bandwidth-tbs") { Description = "HBM TB/s for the memory floor (default 4.3: an assumed ~90% of the H200's 4.8 TB/s peak, not measured here)", DefaultValueFactory = _ => 4.3 };
        var seed = new Option<ulong>("--seed") { Description = "weights and prompt ids", DefaultValueFactory = _ => 1 };
        var output = new Option<string?>("--out", "-o") { Description = "folder for decode.json" };
        var kvCache = new Option<string>("--kv-cache-dtype")
        {
            Description = "comma list of KV cache dtypes to time, each on its own session of the same prompt: auto (the model's) and/or fp8", DefaultValueFactory = _ => "auto",
        };
        var quiet = CommonOptions.Quiet();
        var cmd = new Command("decode", "decode ms/token after a prompt of each context length (prefill untimed), against the memory floor")
        {
            shape, model, device, contexts, tokens, warmup, bandwidth, seed, output, kvCache, quiet,
        };
        cmd.SetAction(r => Cli.Guard(io, r.GetValue(quiet), io =>
        {
            string dev = r.GetValue(device)!;
            var settings = new DecodeSettings
            {
                Shape = r.GetValue(shape), Model = r.GetValue(model), Device = dev, NewBackend = () => CommonOptions.Backend(dev),
                Contexts = Lengths(r, contexts), Tokens = Math.Max(1, r.GetValue(tokens)), Warmup = Math.Max(0, r.GetValue(warmup)),
                KvCaches = r.GetValue(kvCache)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(Backends.KvCacheDTypes.Parse).Distinct().DefaultIfEmpty(Backends.KvCacheDType.Auto).ToArray(),
                BandwidthTbs = r.GetValue(bandwidth), Seed = r.GetValue(seed), Out = CommonOptions.BenchOutput(r.GetValue(output), "bench decode"), CommandLine = CommandLine(r),
            };
            return new DecodeBench(settings, io.Out, io.Err).Run();
        }));
        return cmd;
    }
}
