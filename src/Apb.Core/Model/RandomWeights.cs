using Apb.Backends;
using Apb.Checkpoints;

namespace Apb.Model;

/// <summary>
/// Random weights for a <see cref="ModelConfig"/>: every matrix uniform in [-s, s] with s = 0.02 x sqrt(3) (standard
/// deviation 0.02, Hugging Face's initializer_range), norms (q/k norms too) 1, biases 0.02-uniform. Each tensor is stream i of a
/// counter-based hash, so values depend only on (seed, tensor, element): a backend makes each tensor with
/// <see cref="IBackend.LoadRandom"/> (the CUDA backend on the device with a kernel, no host copy of the model; others
/// from host bf16 buffers, <see cref="RandomValues.LoadOnHost"/>), and all hold the same bits.
/// </summary>
public static class RandomWeights
{
    public const float Scale = 0.02f * 1.7320508f;

    /// <summary>Every tensor of <see cref="LlamaWeights.Build"/>'s table, in its order, as stream 0, 1, 2, ... of the seed.</summary>
    public static LlamaWeights Create(ModelConfig c, IBackend backend, ulong seed = 1)
    {
        ulong stream = 0;
        var weights = LlamaWeights.Build(c, t =>
        {
            bool norm = t.Role is LlamaWeights.Role.Norm or LlamaWeights.Role.HeadNorm;
            int rows = (int)t.Shape[0], cols = t.Shape.Length > 1 ? (int)t.Shape[1] : 1;
            return backend.LoadRandom(t.Name, rows, cols, RandomValues.Key(seed, stream++), norm ? 0f : Scale, norm ? 1f : 0f);
        });
        backend.Synchronize();
        return weights;
    }
}
