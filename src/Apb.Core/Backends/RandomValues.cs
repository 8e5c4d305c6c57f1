using System.Runtime.CompilerServices;
using Apb.Checkpoints;

namespace Apb.Backends;

/// <summary>
/// Counter-based random values for weights without a checkpoint: element i of the tensor with hash key k is a function of
/// (k, i) alone, so every backend makes the same bits wherever it makes them (the CUDA backend with random.cu on the
/// device, others on the host here). Which tensors get which key is the model's business (Model.RandomWeights).
/// </summary>
public static unsafe class RandomValues
{
    // Host buffers live as long as the weights that point into them (a host backend's weight wraps the memory it gets).
    static readonly ConditionalWeakTable<IWeight, ushort[]> HostBuffers = new();

    /// <summary><see cref="IBackend.LoadRandom"/> through the host: bf16 values in a pinned buffer that lives as long as the weight.</summary>
    public static IWeight LoadOnHost(IBackend backend, string name, int rows, int cols, ulong key, float scale, float offset)
    {
        var data = GC.AllocateUninitializedArray<ushort>(checked(rows * cols), pinned: true);
        for (int i = 0; i < data.Length; i++) data[i] = DTypes.FloatToBF16(Value(key, i, scale, offset));
        IWeight w;
        fixed (ushort* p = data)
            w = backend.Load(new WeightView(name, DType.BF16, rows == 1 || cols == 1 ? [(long)rows * cols] : [rows, cols], (byte*)p));
        HostBuffers.Add(w, data);
        return w;
    }

    /// <summary>The hash key of one tensor (stream) of a seed.</summary>
    public static ulong Key(ulong seed, ulong stream) => Mix(seed ^ Mix(stream));

    /// <summary>Element i of the tensor with this key: offset + (2u - 1) x scale, u = 24 hash bits / 2^24 (what random.cu computes).</summary>
    public static float Value(ulong key, long i, float scale, float offset)
    {
        ulong hsh = Mix(key + (ulong)i);
        float u = (float)(uint)(hsh >> 40) * 5.9604644775390625e-8f;
        float centered = (u + u) - 1f;
        float scaled = centered * scale;
        return offset + scaled;
    }

    static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
