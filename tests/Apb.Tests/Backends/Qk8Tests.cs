using Apb.Backends;
using Apb.Backends.Cpu;
using Xunit;

namespace Apb.Tests.Fp8;

/// <summary>
/// QK8 on the CPU backend (--prefill-attention fp8): the attention of q rounded per (row, head) and k per (128-key
/// tile, KV head) through e4m3, computed here from an independent rounding of the inputs (each tile gathered and given
/// one scale, as the format's definition reads); calls QK8 does not reach are left exactly as they were.
/// </summary>
public class Qk8Tests
{
    static float[] Random(int n, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return x;
    }

    static float[] Attend(bool fp8, float[] q, float[] k, float[] v, int tq, int tk, int heads, int kv, int d, AttentionMask mask)
    {
        using var b = new CpuBackend { AttentionQkFp8 = fp8 };
        var gq = b.Allocate(tq, heads * d); var gk = b.Allocate(tk, kv * d); var gv = b.Allocate(tk, kv * d);
        b.Upload(q, gq); b.Upload(k, gk); b.Upload(v, gv);
        var o = b.Allocate(tq, heads * d);
        b.Attention(gq, gk, gv, heads, kv, mask, o, null);
        var r = new float[tq * heads * d];
        b.Download(o, r);
        return r;
    }

    [Theory]
    [InlineData(100, 300, 4, 2, 64, AttentionMask.Causal)]
    [InlineData(64, 129, 8, 2, 128, AttentionMask.None)]
    public void ItIsTheAttentionOfTheRoundedQueriesAndKeys(int tq, int tk, int heads, int kv, int d, AttentionMask mask)
    {
        // Keys grow along the sequence, so each 128-key tile has its own scale.
        var q = Random(tq * heads * d, 1); var v = Random(tk * kv * d, 3);
        var k = Random(tk * kv * d, 2);
        for (int j = 0; j < tk; j++) for (int i = 0; i < kv * d; i++) k[j * kv * d + i] *= 1 + 4f * j / tk;

        var rq = (float[])q.Clone();
        for (int i = 0; i < tq; i++) Fp8E4M3.RoundGroups(rq.AsSpan(i * heads * d, heads * d), d);
        var rk = (float[])k.Clone();
        for (int t0 = 0; t0 < tk; t0 += 128)
            for (int h = 0; h < kv; h++)
            {
                int n = Math.Min(tk, t0 + 128) - t0;
                var tile = new float[n * d];
                for (int j = 0; j < n; j++) k.AsSpan(((t0 + j) * kv + h) * d, d).CopyTo(tile.AsSpan(j * d));
                Fp8E4M3.RoundGroups(tile, tile.Length);
                for (int j = 0; j < n; j++) tile.AsSpan(j * d, d).CopyTo(rk.AsSpan(((t0 + j) * kv + h) * d));
            }

        var fp8 = Attend(true, q, k, v, tq, tk, heads, kv, d, mask);
        Assert.Equal(Attend(false, rq, rk, v, tq, tk, heads, kv, d, mask), fp8);
        Assert.NotEqual(Attend(false, q, k, v, tq, tk, heads, kv, d, mask), fp8);   // the rounding did something
    }

    [Theory]
    [InlineData(63, 64)]    // a short call: the GPU runs the mma.sync kernel in bf16 there
    [InlineData(100, 32)]   // a head dim the Hopper kernel does not take
    public void CallsItDoesNotReachAreUnchanged(int tq, int d)
    {
        var q = Random(tq * 4 * d, 1); var k = Random(200 * 2 * d, 2); var v = Random(200 * 2 * d, 3);
        Assert.Equal(Attend(false, q, k, v, tq, 200, 4, 2, d, AttentionMask.Causal), Attend(true, q, k, v, tq, 200, 4, 2, d, AttentionMask.Causal));
        Assert.False(Qk8.Applies(tq, d, window: 0));
    }

    [Fact]
    public void AHeadDimItDoesNotCoverIsAnErrorThatSaysSo()
    {
        Qk8.RequireHeadDim(64);
        Qk8.RequireHeadDim(128);
        Assert.Contains("this model's is 96", Assert.Throws<ApbException>(() => Qk8.RequireHeadDim(96)).Message);
    }
}
