using System.CommandLine;
using Apb.Checkpoints;
using Apb.Engine;

namespace Apb.Cli.Commands;

/// <summary>`apb inspect`: what a checkpoint is and what it needs, without running it.</summary>
static class InspectCommand
{
    public static Command Create(Io io)
    {
        var model = CommonOptions.Model();
        var cmd = new Command("inspect", "print a model's shape, dtypes, parameter count, tokenizer and memory needs") { model };
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            using var b = ModelBundle.Open(CommonOptions.ResolveModel(r.GetValue(model)));
            var c = b.Config;
            // Every tensor checked against config.json as loading checks it (names, shapes, dtypes, nothing left over),
            // so inspect never describes a checkpoint that generate would refuse. The CPU backend reads weights in
            // place: this maps nothing new and copies nothing.
            using (var cpu = new Backends.Cpu.CpuBackend()) Model.LlamaWeights.Load(c, b.Checkpoint, cpu);
            var tensors = b.Checkpoint.Tensors.ToList();
            long bytes = tensors.Sum(t => t.End - t.Begin);
            long elements = tensors.Sum(t => t.ElementCount);
            var dtypes = tensors.GroupBy(t => DTypes.Name(t.DType)).Select(g => $"{g.Key} x{g.Count()}");
            long kvPerToken = 2L * c.NumHiddenLayers * c.KvDim;
            var o = io.Out;
            o.WriteLine($"model          {Path.GetFullPath(b.Directory)}");
            o.WriteLine($"architecture   {c.Architecture} ({c.TorchDtype})");
            o.WriteLine($"layers         {c.NumHiddenLayers}, hidden {c.HiddenSize}, intermediate {c.IntermediateSize}");
            o.WriteLine($"attention      {c.NumAttentionHeads} heads, {c.NumKeyValueHeads} kv heads, head_dim {c.HeadDim}{(c.QkvBias ? ", qkv bias" : "")}");
            o.WriteLine($"rope           {c.Rope.Type.ToString().ToLowerInvariant()}, theta {c.Rope.Theta}{(c.Rope.Type == RopeType.Default ? "" : $", factor {c.Rope.Factor}")}; max positions {c.MaxPositionEmbeddings}");
            o.WriteLine($"vocab          {c.VocabSize}{(c.TieWordEmbeddings ? ", tied embeddings" : "")}");
            o.WriteLine($"parameters     {elements:N0} in {tensors.Count} tensors ({string.Join(", ", dtypes)}); config implies {c.ParameterCount:N0}");
            o.WriteLine($"weights        {Size(bytes)} in {b.Checkpoint.Files.Count} file(s), memory-mapped");
            o.WriteLine($"kv cache       {Size(kvPerToken * 4 * 1024)} per 1K tokens in fp32 (CPU), {Size(kvPerToken * 2 * 1024)} in bf16");
            o.WriteLine($"tokenizer      {b.Tokenizer.Kind}");
            o.WriteLine($"chat template  {b.Tokenizer.ChatTemplate.Name}");
            o.WriteLine($"stop tokens    {string.Join(", ", b.StopTokens)}");
            return 0;
        }));
        return cmd;
    }

    static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F2} MiB",
        _ => $"{bytes / 1024.0:F1} KiB",
    };
}
