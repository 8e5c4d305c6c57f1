using Apb.Attention;
using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Comms;
using Apb.Model;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Distributed;

public class StarPhaseTests
{
    /// <summary>The all-gathered (out, lse) merge over H ranks equals one attention over the concatenated caches.</summary>
    [Theory]
    [InlineData(new[] { 7 }, 3)]
    [InlineData(new[] { 5, 0, 9 }, 1)]    // a rank with an empty cache (its block was all padding)
    [InlineData(new[] { 4, 6, 3, 8 }, 4)]
    public void MergeEqualsAttentionOverTheConcatenatedCaches(int[] cacheRows, int newRows)
    {
        var c = LoadModel("llama-tiny").Config;
        var rope = new RopeTable(c.Rope, c.HeadDim);
        int H = cacheRows.Length, total = cacheRows.Sum(), position = total + 3;
        var rng = new Random(H * 10 + newRows);
        float[] R(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var cacheK = R(total * c.KvDim); var cacheV = R(total * c.KvDim);
        var q = R(newRows * c.QDim); var k = R(newRows * c.KvDim); var v = R(newRows * c.KvDim);

        Tensor Up(IBackend b, float[] x, int rows, int cols) { var t = b.Allocate(rows, cols); b.Upload(x, t); return t; }

        // Reference: rotate the new rows at their positions, append to the whole cache, causal (bottom-right) attention.
        var rb = new CpuBackend();
        var rq = Up(rb, q, newRows, c.QDim); var rk = Up(rb, k, newRows, c.KvDim);
        var positions = Enumerable.Range(position, newRows).ToArray();
        rb.Rope(rq, c.NumAttentionHeads, positions, rope);
        rb.Rope(rk, c.NumKeyValueHeads, positions, rope);
        var allK = new float[(total + newRows) * c.KvDim]; var allV = new float[allK.Length];
        cacheK.CopyTo(allK, 0); cacheV.CopyTo(allV, 0);
        rb.Download(rk, allK.AsSpan(total * c.KvDim)); v.CopyTo(allV, total * c.KvDim);
        var want = rb.Allocate(newRows, c.QDim);
        rb.Attention(rq, Up(rb, allK, total + newRows, c.KvDim), Up(rb, allV, total + newRows, c.KvDim),
            c.NumAttentionHeads, c.NumKeyValueHeads, AttentionMask.Causal, want, null);
        var wantValues = new float[newRows * c.QDim];
        rb.Download(want, wantValues);

        var group = new InProcessGroup(H, TimeSpan.FromSeconds(20));
        var outs = group.Run(r =>
        {
            var b = new CpuBackend();
            int start = cacheRows.Take(r).Sum();
            var caches = Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new KvCache(b, c.KvDim, 4)).ToArray();
            var ck = Up(b, cacheK[(start * c.KvDim)..((start + cacheRows[r]) * c.KvDim)], cacheRows[r], c.KvDim);
            var cv = Up(b, cacheV[(start * c.KvDim)..((start + cacheRows[r]) * c.KvDim)], cacheRows[r], c.KvDim);
            caches[1].Append(ck, cv);
            var phase = new StarPhaseAttention(b, c, rope, group.Communicator(r, b), caches, position);
            var o = b.Allocate(newRows, c.QDim);
            phase.Attend(1, Up(b, q, newRows, c.QDim), Up(b, k, newRows, c.KvDim), Up(b, v, newRows, c.KvDim), o);
            var result = new float[newRows * c.QDim];
            b.Download(o, result);
            return (result, caches[1].Length);
        }, _ => "star phase test");

        for (int r = 0; r < H; r++)
        {
            Assert.True(RelativeError(outs[r].result, wantValues) < 1e-5, $"rank {r}: relative error {RelativeError(outs[r].result, wantValues):E3}");
            Assert.Equal(outs[0].result, outs[r].result); // bit-identical on every rank
            Assert.Equal(cacheRows[r] + (r == H - 1 ? newRows : 0), outs[r].Item2);
        }
    }
}
