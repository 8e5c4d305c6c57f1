using Apb.Checkpoints;

namespace Apb.Backends;

/// <summary>
/// Rotary frequencies for one head dimension, with the checkpoint's scaling. Computed as Hugging Face does: inv_freq in
/// fp32, angle = fp32(position) x fp32(inv_freq) rounded to fp32, then cos/sin. HF does this in fp32 even when the model
/// runs in float64, so it is part of the model's definition: a "more exact" angle would drift from HF at long contexts.
/// </summary>
public sealed class RopeTable
{
    public int HeadDim { get; }
    public float[] InvFreq { get; }

    public RopeTable(RopeConfig rope, int headDim)
    {
        HeadDim = headDim;
        int half = headDim / 2;
        InvFreq = new float[half];
        for (int i = 0; i < half; i++)
        {
            float exponent = (float)(2 * i) / headDim;
            float f = 1.0f / MathF.Pow((float)rope.Theta, exponent);
            InvFreq[i] = rope.Type switch
            {
                RopeType.Linear => f / (float)rope.Factor,
                RopeType.Llama3 => Llama3(f, rope),
                _ => f,
            };
        }
    }

    // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between interpolated smoothly.
    static float Llama3(float invFreq, RopeConfig r)
    {
        double lowWavelen = r.OriginalMaxPositions / r.LowFreqFactor;
        double highWavelen = r.OriginalMaxPositions / r.HighFreqFactor;
        float wavelen = 2 * MathF.PI / invFreq;
        if (wavelen > lowWavelen) return invFreq / (float)r.Factor;
        if (wavelen < highWavelen) return invFreq;
        float smooth = (float)((r.OriginalMaxPositions / wavelen - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor));
        return (1 - smooth) * invFreq / (float)r.Factor + smooth * invFreq;
    }

    /// <summary>cos and sin of the angle for (position, i), i &lt; HeadDim / 2.</summary>
    public (float Cos, float Sin) At(int position, int i)
    {
        float angle = (float)position * InvFreq[i];
        return ((float)Math.Cos(angle), (float)Math.Sin(angle));
    }
}
