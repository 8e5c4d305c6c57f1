using Apb.Backends;
using Apb.Backends.Cpu;
using Xunit;
using Xunit.Abstractions;

// Not Apb.Tests.Backends: that namespace would shadow Apb.Backends for "Backends.Cpu..." names in other test files.
namespace Apb.Tests.CpuBackendTests;

/// <summary>The blocked fp32 CPU attention against the readable reference (ReferenceAttention), over shapes that hit every edge of the blocking.</summary>
public class CpuAttentionTests(ITestOutputHelper log)
{
    // (Tq, Tk): single rows, lengths that are not multiples of any block or vector width, Tq > Tk (causal rows that see
    // nothing), Tq < Tk (a suffix of queries against a longer cache), and several 64-key blocks.
    static readonly (int Tq, int Tk)[] Lengths =
        [(1, 1), (1, 37), (7, 7), (37, 37), (37, 129), (129, 37), (129, 200), (200, 129), (200, 200)];

    // (heads, kvHeads): GQA ratios 1, 3 and 4.
    static readonly (int Heads, int KvHeads)[] Groups = [(2, 2), (3, 1), (8, 2)];

    public static TheoryData<int, AttentionMask> HeadDims()
    {
        var data = new TheoryData<int, AttentionMask>();
        foreach (int d in new[] { 16, 32, 64, 128 })
            foreach (var mask in new[] { AttentionMask.None, AttentionMask.Causal })
                data.Add(d, mask);
        return data;
    }

    [Theory]
    [MemberData(nameof(HeadDims))]
    public void MatchesFloat64Reference(int d, AttentionMask mask)
    {
        foreach (var (tq, tk) in Lengths)
            foreach (var (heads, kvHeads) in Groups)
                Check(tq, tk, heads, kvHeads, d, mask, vectorBits: 0, seed: tq * 1000 + tk + d);
    }

    /// <summary>The Vector256 and Vector128 instantiations, which this AVX-512 machine would otherwise never run.</summary>
    [Theory]
    [InlineData(256)]
    [InlineData(128)]
    public void NarrowVectorPathsMatch(int bits)
    {
        foreach (var (tq, tk) in new[] { (1, 1), (37, 129), (129, 37), (150, 150) })
            foreach (var (heads, kvHeads) in Groups)
                foreach (int d in new[] { 16, 64 })
                    foreach (var mask in new[] { AttentionMask.None, AttentionMask.Causal })
                        Check(tq, tk, heads, kvHeads, d, mask, bits, seed: tq + tk + d + bits);
    }

    /// <summary>Head dimensions that are not a multiple of the vector width take the one-vector and scalar column tails.</summary>
    [Theory]
    [InlineData(4)]
    [InlineData(8)]
    [InlineData(20)]
    [InlineData(48)]
    [InlineData(80)]
    [InlineData(100)]
    public void OddHeadDims(int d)
    {
        foreach (int bits in new[] { 0, 256, 128 })
            foreach (var mask in new[] { AttentionMask.None, AttentionMask.Causal })
            {
                Check(129, 130, 6, 2, d, mask, bits, seed: d + bits);
                Check(70, 33, 4, 4, d, mask, bits, seed: d + bits + 1);
            }
    }

    /// <summary>
    /// Peaky softmax (scores up to ~30) whose max keeps rising from block to block: every block rescales the running
    /// sums. Not larger: a score of 600 carries fp32 rounding of 6e-5, which exp() turns into that relative error in
    /// the weights of any fp32 implementation.
    /// </summary>
    [Fact]
    public void LargeScoresAndRisingMax()
    {
        foreach (var mask in new[] { AttentionMask.None, AttentionMask.Causal })
            Check(200, 333, 6, 2, 64, mask, vectorBits: 0, seed: 7, amplitude: 2, risingKeys: true);
    }

    /// <summary>
    /// Long key ranges (decode against a 16K cache, a short chunk against 20K keys): the softmax sum and the value sum
    /// run over 16K+ terms each, where a plain running fp32 sum would drift towards the 1e-5 limit.
    /// </summary>
    [Theory]
    [InlineData(1, 16384, 64)]
    [InlineData(1, 16384, 128)]
    [InlineData(40, 20000, 64)]
    public void LongKeyRanges(int tq, int tk, int d)
    {
        foreach (var mask in new[] { AttentionMask.None, AttentionMask.Causal })
            Check(tq, tk, 6, 2, d, mask, vectorBits: 0, seed: tk + d);
    }

    /// <summary>q, k and v as row views into larger tensors (the backend passes slices of the KV cache).</summary>
    /// <summary>The reference's mask, entry by entry, on the cases that matter: equal lengths, a cache, more queries than keys.</summary>
    [Fact]
    public void ReferenceMaskIsBottomRightCausal()
    {
        Assert.True(ReferenceAttention.Visible(0, 0, 3, 3, AttentionMask.Causal));
        Assert.False(ReferenceAttention.Visible(0, 1, 3, 3, AttentionMask.Causal));
        Assert.True(ReferenceAttention.Visible(0, 5, 1, 6, AttentionMask.Causal));   // one new row sees the whole cache
        Assert.True(ReferenceAttention.Visible(0, 4, 2, 6, AttentionMask.Causal));   // the first of two new rows sees itself...
        Assert.False(ReferenceAttention.Visible(0, 5, 2, 6, AttentionMask.Causal));  // ...not the second
        Assert.False(ReferenceAttention.Visible(1, 0, 4, 2, AttentionMask.Causal));  // Tq > Tk: the first two rows see nothing
        Assert.True(ReferenceAttention.Visible(2, 0, 4, 2, AttentionMask.Causal));
        Assert.True(ReferenceAttention.Visible(0, 9, 1, 3, AttentionMask.None));
    }

    [Fact]
    public void RowViews()
    {
        int d = 32, heads = 4, kvHeads = 2, tq = 50, tk = 90;
        var rng = new Random(3);
        var qBig = Random(rng, tq + 5, heads * d, 1); var kBig = Random(rng, tk + 9, kvHeads * d, 1);
        var vBig = Random(rng, tk + 9, kvHeads * d, 1); var oBig = new CpuTensor(tq + 2, heads * d);
        var q = (CpuTensor)qBig.RowSlice(5, tq); var k = (CpuTensor)kBig.RowSlice(9, tk);
        var v = (CpuTensor)vBig.RowSlice(9, tk); var o = (CpuTensor)oBig.RowSlice(1, tq);
        var lse = new CpuTensor(tq, heads);
        CpuAttention.Run(q, k, v, heads, kvHeads, AttentionMask.Causal, o, lse);
        var (refO, refL) = Naive(q, k, v, heads, kvHeads, AttentionMask.Causal);
        Compare(o, lse, refO, refL, heads, d, "views");
        Assert.True(oBig.Row(0).ToArray().All(x => x == 0) && oBig.Row(tq + 1).ToArray().All(x => x == 0),
            "wrote outside the output view");
    }

    void Check(int tq, int tk, int heads, int kvHeads, int d, AttentionMask mask, int vectorBits, int seed,
        float amplitude = 1, bool risingKeys = false)
    {
        var rng = new Random(seed);
        var q = Random(rng, tq, heads * d, amplitude);
        var k = Random(rng, tk, kvHeads * d, amplitude);
        var v = Random(rng, tk, kvHeads * d, 1);
        if (risingKeys)
        {
            // Positive queries and keys shifted by 0.005 j along (1, 1, ...): later keys score higher, so the running max
            // of every row rises in every key block.
            foreach (ref float x in q.Span) x = MathF.Abs(x);
            for (int j = 0; j < tk; j++)
                foreach (ref float x in k.Row(j)) x += 0.005f * j;
        }
        var o = new CpuTensor(tq, heads * d); o.Span.Fill(float.NaN); // every element must be written
        var lse = new CpuTensor(tq, heads);
        if (vectorBits == 0) CpuAttention.Run(q, k, v, heads, kvHeads, mask, o, lse);
        else CpuAttention.Run(q, k, v, heads, kvHeads, mask, o, lse, vectorBits);
        var (refO, refL) = Naive(q, k, v, heads, kvHeads, mask);
        double worst = Compare(o, lse, refO, refL, heads, d, $"Tq {tq} Tk {tk} heads {heads}/{kvHeads} d {d} {mask} bits {vectorBits}");
        log.WriteLine($"Tq {tq} Tk {tk} heads {heads}/{kvHeads} d {d} {mask} bits {vectorBits}: worst relative error {worst:E2}");
    }

    static CpuTensor Random(Random rng, int rows, int cols, float amplitude)
    {
        var t = new CpuTensor(rows, cols);
        var s = t.Span;
        for (int i = 0; i < s.Length; i++)
        {
            float x = (float)(rng.NextDouble() * 2 - 1);
            s[i] = amplitude * (x >= 0 ? x + 0.01f : x - 0.01f); // non-zero, so relative errors mean something
        }
        return t;
    }

    /// <summary>The readable reference (<see cref="ReferenceAttention"/>), as double arrays for the comparison.</summary>
    static (double[] O, double[] Lse) Naive(CpuTensor q, CpuTensor k, CpuTensor v, int heads, int kvHeads, AttentionMask mask)
    {
        var o = new CpuTensor(q.Rows, q.Cols);
        var lse = new CpuTensor(q.Rows, heads);
        ReferenceAttention.Run(q, k, v, heads, kvHeads, mask, o, lse);
        return (o.Span.ToArray().Select(x => (double)x).ToArray(), lse.Span.ToArray().Select(x => (double)x).ToArray());
    }

    /// <summary>Per (row, head): output error relative to the reference row's norm, and the lse error, both under 1e-5.</summary>
    static double Compare(CpuTensor o, CpuTensor lse, double[] refO, double[] refL, int heads, int d, string what)
    {
        int tq = o.Rows;
        double worst = 0;
        for (int i = 0; i < tq; i++)
            for (int h = 0; h < heads; h++)
            {
                var got = o.Row(i).Slice(h * d, d);
                double l = lse.Row(i)[h], want = refL[i * heads + h];
                if (double.IsNegativeInfinity(want))
                {
                    Assert.True(float.IsNegativeInfinity((float)l), $"{what}: row {i} head {h} sees no key, lse {l}");
                    Assert.True(got.ToArray().All(x => x == 0), $"{what}: row {i} head {h} sees no key, output not zero");
                    continue;
                }
                double num = 0, den = 0;
                for (int c = 0; c < d; c++)
                {
                    double w = refO[(i * heads + h) * d + c];
                    num += (got[c] - w) * (got[c] - w); den += w * w;
                }
                double err = Math.Sqrt(num / den);
                worst = Math.Max(worst, err);
                Assert.True(err < 1e-5, $"{what}: row {i} head {h} relative error {err:E2}");
                Assert.True(Math.Abs(l - want) < 1e-5 * Math.Max(1, Math.Abs(want)), $"{what}: row {i} head {h} lse {l} vs {want}");
            }
        return worst;
    }
}
