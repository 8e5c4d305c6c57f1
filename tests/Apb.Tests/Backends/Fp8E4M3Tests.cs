using Apb.Backends;
using Xunit;

namespace Apb.Tests.Fp8;

/// <summary>The FP8 E4M3 codec against the format's definition (PTX cvt.rn.satfinite.e4m3x2.f32's rounding).</summary>
public sealed class Fp8E4M3Tests
{
    [Fact]
    public void EveryCodeDecodesAndEncodesBackToItself()
    {
        for (int c = 0; c < 256; c++)
        {
            byte code = (byte)c;
            float v = Fp8E4M3.Decode(code);
            if ((c & 0x7F) == 0x7F) { Assert.True(float.IsNaN(v)); Assert.Equal(Fp8E4M3.NaN, Fp8E4M3.Encode(v)); continue; }
            Assert.Equal(code, Fp8E4M3.Encode(v));
        }
    }

    [Theory]
    [InlineData(448f, 0x7E)]
    [InlineData(1e6f, 0x7E)]          // saturates, no infinity
    [InlineData(-1e6f, 0xFE)]
    [InlineData(464f, 0x7E)]          // halfway to the code that would be 480: rounds there, then saturates
    [InlineData(1f, 0x38)]            // exponent 7 (bias 7), mantissa 0
    [InlineData(1.0625f, 0x38)]       // halfway between 1 and 1.125: ties to the even mantissa (0)
    [InlineData(1.1875f, 0x3A)]       // halfway between 1.125 and 1.25: ties to even (2)
    [InlineData(0.015625f, 0x08)]     // 2^-6, the smallest normal
    [InlineData(0.001953125f, 0x01)]  // 2^-9, the smallest subnormal
    [InlineData(0.0009765625f, 0x00)] // 2^-10: halfway to 2^-9, ties to even (0)
    [InlineData(0.0029296875f, 0x02)] // 1.5 x 2^-9: ties to even (2 x 2^-9)
    [InlineData(-0f, 0x80)]
    [InlineData(0.01367188f, 0x07)]   // just under the smallest normal: the largest subnormal (7/8 x 2^-6)
    public void RoundsToNearestEvenAndSaturates(float x, int code) => Assert.Equal((byte)code, Fp8E4M3.Encode(x));

    [Fact]
    public void RoundingErrorIsWithinHalfAStep()
    {
        var rng = new Random(3);
        for (int i = 0; i < 20000; i++)
        {
            float x = (float)((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-8, 9)));
            float r = Fp8E4M3.Round(x);
            // Normal values: 3 mantissa bits, so the error is at most 2^-4 of the value's power of two.
            double step = Math.Abs(x) >= Math.Pow(2, -6) ? Math.Pow(2, Math.Floor(Math.Log2(Math.Abs(x))) - 3) : Math.Pow(2, -9);
            Assert.True(Math.Abs(r - x) <= step / 2 + 1e-12 || Math.Abs(x) > 448, $"{x} -> {r}");
        }
    }

    [Fact]
    public void RoundOnTheBitsIsTheCodecRoundTrip()
    {
        void Same(float x)
        {
            float want = Fp8E4M3.Decode(Fp8E4M3.Encode(x)), got = Fp8E4M3.Round(x);
            Assert.True(want.Equals(got), $"{x:R} (bits {BitConverter.SingleToInt32Bits(x):X8}): codec {want:R}, Round {got:R}");
        }
        // Round works on the float's bits; Decode(Encode(x)) is the definition. Every float exponent from 2^-12 to 2^9,
        // each of the 8 kept mantissas, and the dropped 20 bits at the places that decide: zero, just under and over
        // half (0x7FFFF, 0x80001), exactly half (a tie, to even), all ones, and a spread between.
        int[] low = [0, 1, 0x3FFFF, 0x7FFFF, 0x80000, 0x80001, 0xC0000, 0xFFFFF];
        for (int e = -12; e <= 9; e++)
            for (int m = 0; m < 8; m++)
                foreach (int l in low)
                {
                    float x = BitConverter.Int32BitsToSingle(((e + 127) << 23) | (m << 20) | l);
                    Same(x);
                    Same(-x);
                }
        for (int k = 0; k < 64; k++)
        {
            Same(k / 512f); Same(-k / 512f); Same((k + 0.5f) / 512f);     // the subnormal grid and its ties
            Same(448f + k); Same(-(448f + k));                            // saturation, 464 (a tie) included
        }
        foreach (float x in new[] { 0f, -0f, float.PositiveInfinity, float.NegativeInfinity, float.Epsilon, 0.015625f, 0.0156249990f })
            Same(x);
        Assert.True(float.IsNaN(Fp8E4M3.Round(float.NaN)));
    }

    [Fact]
    public void HeadsAreScaledToTheFormatEachOnItsOwn()
    {
        // Two heads of 4: the first's largest value maps to 448 exactly and comes back exactly; the second is all zeros.
        var row = new[] { 3f, -1.5f, 0.1f, 0.75f, 0f, 0f, 0f, 0f };
        Fp8E4M3.RoundGroups(row, 4);
        Assert.Equal(3f, row[0]);
        Assert.Equal(-1.5f, row[1]);
        Assert.Equal(0.75f, row[3]);
        Assert.InRange(row[2], 0.09f, 0.11f);
        Assert.Equal(new float[4], row[4..]);
    }
}
