using Apb.Checkpoints;

namespace Apb.Backends;

/// <summary>
/// Rotary frequencies for one head dimension, with the checkpoint's scaling. Computed as Hugging Face does: inv_freq in
/// fp32, angle = fp32(position) x fp32(inv_freq) rounded to fp32, then cos/sin. HF does this in fp32 even when the model
/// runs in float64, so it is part of the model's definition: a "more exact" angle would drift from HF at long contexts.
/// Each formula follows transformers' modeling_rope_utils step by step in fp32 where HF computes in fp32 tensors and in
/// double where it computes in Python floats, so the frequencies are HF's to the last bit or two.
/// </summary>
public sealed class RopeTable
{
    public int HeadDim { get; }
    public float[] InvFreq { get; }

    /// <summary>
    /// What cos and sin are multiplied by before they rotate q and k (HF's attention_scaling): YaRN's attention factor,
    /// 1 for every other type. Both q and k carry it, so attention logits grow by its square.
    /// </summary>
    public float AttentionScaling { get; }

    readonly RopeConfig _rope;
    readonly int _seqLen;        // dynamic tables: the call length they were made for (0: the model's own table)
    readonly RopeTable? _root;   // dynamic tables: the model's own table, which answers ForLength
    RopeTable? _longer;

    public RopeTable(RopeConfig rope, int headDim) : this(rope, headDim, 0, null) { }

    RopeTable(RopeConfig rope, int headDim, int seqLen, RopeTable? root)
    {
        _rope = rope; HeadDim = headDim; _seqLen = seqLen; _root = root;
        int half = headDim / 2;
        InvFreq = new float[half];
        float theta = rope.Type == RopeType.Dynamic && seqLen > rope.OriginalMaxPositions ? DynamicBase(rope, headDim, seqLen) : (float)rope.Theta;
        for (int i = 0; i < half; i++)
        {
            float exponent = (float)(2 * i) / headDim;
            float f = 1.0f / MathF.Pow(theta, exponent);
            InvFreq[i] = rope.Type switch
            {
                RopeType.Linear => f / (float)rope.Factor,
                RopeType.Llama3 => Llama3(f, rope),
                RopeType.Yarn => Yarn(i, MathF.Pow(theta, exponent), rope, headDim),
                _ => f,
            };
        }
        AttentionScaling = rope.Type == RopeType.Yarn ? (float)rope.AttentionFactor : 1f;
    }

    /// <summary>
    /// The table a forward call whose last position is <paramref name="seqLen"/> - 1 rotates its rows with. Every type
    /// but dynamic has one table. Dynamic NTK (HF's "dynamic") raises the base for calls longer than
    /// max_position_embeddings, from that call's length, and rotates the call's q and new k with it (keys already cached
    /// keep the frequencies they were written with): a prefill of N tokens uses the table for N, each decode step the
    /// table for its own position + 1, as transformers' generate does.
    /// </summary>
    public RopeTable ForLength(int seqLen)
    {
        if (_root != null) return _root.ForLength(seqLen);
        if (_rope.Type != RopeType.Dynamic || seqLen <= _rope.OriginalMaxPositions) return this;
        // One table kept: a decode loop asks for each length once, in order. The reference swap is atomic, so ranks
        // sharing a model see a whole table either way.
        var t = _longer;
        if (t is null || t._seqLen != seqLen) _longer = t = new RopeTable(_rope, HeadDim, seqLen, this);
        return t;
    }

    // HF's dynamic base: theta x (factor x L / max_positions - (factor - 1)) ^ (d / (d - 2)), L = the call's length, in
    // fp32 (L arrives as a tensor, so every step after it is a tensor op).
    static float DynamicBase(RopeConfig r, int d, int seqLen)
    {
        float ratio = (float)r.Factor * seqLen / r.OriginalMaxPositions;
        float stretch = MathF.Pow(ratio - (float)(r.Factor - 1), (float)(d / (double)(d - 2)));
        return (float)r.Theta * stretch;
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

    // YaRN ("NTK-by-parts"): dimensions that turn many times over the original context keep their frequency
    // (extrapolation), those that turn less than once are divided by `factor` (interpolation), a linear ramp between the
    // two correction dimensions blends them. The ramp's ends come from beta_fast / beta_slow rotations, in double.
    static float Yarn(int i, float posFreq, RopeConfig r, int d)
    {
        double CorrectionDim(double rotations) =>
            d * Math.Log(r.OriginalMaxPositions / (rotations * 2 * Math.PI)) / (2 * Math.Log(r.Theta));
        double low = CorrectionDim(r.BetaFast), high = CorrectionDim(r.BetaSlow);
        if (r.Truncate) { low = Math.Floor(low); high = Math.Ceiling(high); }
        low = Math.Max(low, 0); high = Math.Min(high, d - 1);
        if (low == high) high += 0.001; // as HF: no zero-width ramp
        float ramp = Math.Clamp(((float)i - (float)low) / (float)(high - low), 0f, 1f);
        float extrapolationWeight = 1f - ramp;
        float extrapolated = 1f / posFreq, interpolated = 1f / ((float)r.Factor * posFreq);
        return interpolated * (1f - extrapolationWeight) + extrapolated * extrapolationWeight;
    }

    /// <summary>cos and sin of the angle for (position, i), i &lt; HeadDim / 2, times <see cref="AttentionScaling"/>.</summary>
    public (float Cos, float Sin) At(int position, int i)
    {
        float angle = (float)position * InvFreq[i];
        float cos = (float)Math.Cos(angle), sin = (float)Math.Sin(angle);
        return AttentionScaling == 1f ? (cos, sin) : (cos * AttentionScaling, sin * AttentionScaling);
    }
}
