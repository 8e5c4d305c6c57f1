namespace Apb.Backends;

/// <summary>
/// FP8 E4M3 ("fn": no infinities; 0x7F and 0xFF are NaN; largest finite 448) as PTX's cvt.rn.satfinite.e4m3x2.f32
/// converts: round to nearest, ties to even, finite values beyond 448 saturate to +-448, NaN stays NaN. Codes: sign bit,
/// 4 exponent bits (bias 7), 3 mantissa bits; exponent 0 is subnormal (m / 8 x 2^-6).
/// The KV cache's fp8 format quantizes each group of values of a (token, KV head) row with its own scale
/// (<see cref="RowScale"/>), so that the group's largest magnitude maps to 448 (docs/notes/kv-fp8-plan.md: groups of 32).
/// </summary>
public static class Fp8E4M3
{
    public const float Max = 448f;
    public const byte NaN = 0x7F;

    public static float Decode(byte code)
    {
        int sign = code >> 7, e = (code >> 3) & 0xF, m = code & 7;
        if (e == 15 && m == 7) return float.NaN;
        float a = e == 0 ? m / 8f * MathF.Pow(2, -6) : (1 + m / 8f) * MathF.Pow(2, e - 7);
        return sign != 0 ? -a : a;
    }

    public static byte Encode(float x)
    {
        if (float.IsNaN(x)) return NaN;
        byte sign = (byte)(BitConverter.SingleToInt32Bits(x) < 0 ? 0x80 : 0);
        double a = Math.Abs((double)x);
        if (a >= Max) return (byte)(sign | 0x7E);
        int code;
        if (a < Math.Pow(2, -6))
            code = (int)Math.Round(a / Math.Pow(2, -9), MidpointRounding.ToEven); // subnormals; 8 is the smallest normal
        else
        {
            int e = (int)Math.Floor(Math.Log2(a));
            // Log2 of a value just under a power of two can round up: keep the significand in [1, 2).
            if (a < Math.Pow(2, e)) e--;
            else if (a >= Math.Pow(2, e + 1)) e++;
            int m = (int)Math.Round((a / Math.Pow(2, e) - 1) * 8, MidpointRounding.ToEven);
            if (m == 8) { m = 0; e++; }
            code = ((e + 7) << 3) | m;
        }
        return (byte)(sign | Math.Min(code, 0x7E)); // a value that rounds past 448 saturates
    }

    /// <summary>
    /// The value <paramref name="x"/> is stored as: <see cref="Decode"/> of <see cref="Encode"/>, computed on the float's
    /// bits (the CPU rounds every q, k and cache value through it, where Encode's logarithms would cost more than the
    /// attention): a normal value keeps 3 of its 23 mantissa bits, rounded to nearest even; below 2^-6 the grid is 2^-9.
    /// </summary>
    public static float Round(float x)
    {
        float a = MathF.Abs(x);
        if (a < MinNormal) return MathF.Round(x * 512f) / 512f;   // subnormal steps of 2^-9; MathF.Round ties to even
        if (float.IsNaN(x)) return x;
        int bits = BitConverter.SingleToInt32Bits(x);
        bits = (bits + 0x7FFFF + ((bits >> 20) & 1)) & ~0xFFFFF;  // round the mantissa to 3 bits, ties to even
        float r = BitConverter.Int32BitsToSingle(bits);
        return MathF.Abs(r) > Max ? MathF.CopySign(Max, x) : r;   // past 448 (infinity included): saturated, as Encode
    }

    /// <summary>2^-6, the smallest normal value.</summary>
    const float MinNormal = 0.015625f;

    /// <summary>
    /// A row's scale: its largest magnitude over 448 (fp32 division), so that row / scale spans the format; 1 for a
    /// row of zeros. A non-finite value makes the scale non-finite: such a row is the model's problem, not the cache's.
    /// </summary>
    public static float RowScale(ReadOnlySpan<float> row) => ScaleOf(AbsMax(row, 0f));

    /// <summary>The largest magnitude in <paramref name="values"/>, or <paramref name="from"/> if larger.</summary>
    public static float AbsMax(ReadOnlySpan<float> values, float from)
    {
        foreach (float v in values) from = MathF.Max(from, MathF.Abs(v));
        return from;
    }

    /// <summary><see cref="RowScale"/>'s rule for a largest magnitude already found (over a row, or a tile of rows).</summary>
    public static float ScaleOf(float amax) => amax == 0 ? 1f : amax / Max;

    /// <summary><paramref name="values"/> replaced by what their codes at scale <paramref name="scale"/> stand for.</summary>
    public static void RoundScaled(Span<float> values, float scale)
    {
        for (int i = 0; i < values.Length; i++) values[i] = Round(values[i] / scale) * scale;
    }

    /// <summary>
    /// Each <paramref name="group"/>-wide piece of <paramref name="row"/> (a head, or part of one; each with its own
    /// scale) replaced by what the fp8 cache gives back for it.
    /// </summary>
    public static void RoundGroups(Span<float> row, int group)
    {
        for (int h = 0; h + group <= row.Length; h += group)
        {
            var head = row.Slice(h, group);
            RoundScaled(head, RowScale(head));
        }
    }
}
