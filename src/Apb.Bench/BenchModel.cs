using Apb.Backends;
using Apb.Checkpoints;
using Apb.Engine;
using Apb.Model;

namespace Apb.Bench;

/// <summary>
/// The model a bench runs: a checkpoint folder (its weights loaded on the backend), or a random-weight shape made there
/// (<see cref="ModelShapes"/>; llama-3.1-8b when neither is given). Bundle, when there is one, is the caller's to dispose.
/// </summary>
public sealed record BenchModel(ModelBundle? Bundle, ModelConfig Config, LlamaWeights Weights, string Name)
{
    /// <param name="cpu">on the CPU backend: a shape whose fp32 weights cannot fit this machine is refused before it is built</param>
    /// <summary>The shape a bench runs when given neither --shape nor --model.</summary>
    public const string DefaultShape = "llama-3.1-8b";

    public static BenchModel Open(string? shape, string? modelDir, IBackend backend, ulong seed, bool cpu = false)
    {
        if (shape != null && modelDir != null) throw new ApbException("give --shape or --model, not both");
        if (modelDir != null)
        {
            var bundle = ModelBundle.Open(modelDir);
            return new(bundle, bundle.Config, bundle.LoadWeights(backend), modelDir);
        }
        string name = shape ?? DefaultShape;
        var config = ModelShapes.Get(name);
        if (cpu) CpuLimits.CheckWeights(config, $"--shape {name}");
        return new(null, config, RandomWeights.Create(config, backend, seed), name);
    }

    /// <summary>Token ids of a case: the same for a seed and length on every rank and in every run.</summary>
    public static Random CaseRandom(ulong seed, int n) => new(unchecked((int)seed) ^ n);
}
