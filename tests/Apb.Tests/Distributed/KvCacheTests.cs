using Apb.Attention;
using Apb.Backends.Cpu;
using Xunit;

namespace Apb.Tests.Distributed;

/// <summary>The per-layer cache: rows survive growth, reservation is free before the first append, truncation forgets.</summary>
public class KvCacheTests
{
    static CpuTensor Rows(int start, int count, int cols, float sign)
    {
        var t = new CpuTensor(count, cols);
        for (int r = 0; r < count; r++)
            for (int c = 0; c < cols; c++) t.Row(r)[c] = sign * ((start + r) * 1000 + c + 1);
        return t;
    }

    static void AssertRows(CpuTensor t, int count, int cols, float sign)
    {
        Assert.Equal(count, t.Rows);
        for (int r = 0; r < count; r++)
            for (int c = 0; c < cols; c++) Assert.Equal(sign * (r * 1000 + c + 1), t.Row(r)[c]);
    }

    [Fact]
    public void RowsSurviveGrowthAcrossManyAppends()
    {
        var cache = new KvCache(new CpuBackend(), cols: 6, capacity: 3);
        int n = 0;
        foreach (int step in new[] { 2, 1, 5, 1, 700, 1500, 3 })
        {
            cache.Append(Rows(n, step, 6, 1), Rows(n, step, 6, -1));
            n += step;
        }
        Assert.Equal(n, cache.Length);
        Assert.True(cache.Capacity >= n);
        AssertRows((CpuTensor)cache.K, n, 6, 1);
        AssertRows((CpuTensor)cache.V, n, 6, -1);
    }

    /// <summary>
    /// AppendRows hands out the next rows for the caller to fill (FullAttention's fused rope + append writes them), growing
    /// the buffers first and keeping what they held; the slices are the rows the cache's K and V then show.
    /// </summary>
    [Fact]
    public void AppendRowsReturnsTheNextRowsAcrossGrowth()
    {
        var b = new CpuBackend();
        var cache = new KvCache(b, cols: 3, capacity: 2);
        int n = 0;
        foreach (int step in new[] { 2, 1, 4, 1500 })
        {
            var (k, v) = cache.AppendRawRows(step);
            Assert.Equal(step, k.Rows);
            b.Copy(Rows(n, step, 3, 1), 0, 0, k, 0, 0, step, 3);
            b.Copy(Rows(n, step, 3, -1), 0, 0, v, 0, 0, step, 3);
            n += step;
            Assert.Equal(n, cache.Length);
        }
        AssertRows((CpuTensor)cache.K, n, 3, 1);
        AssertRows((CpuTensor)cache.V, n, 3, -1);
    }

    [Fact]
    public void ReserveBeforeTheFirstAppendSetsTheCapacityAndAppendRespectsRowRanges()
    {
        var cache = new KvCache(new CpuBackend(), cols: 4, capacity: 10);
        cache.Reserve(300);
        Assert.Equal(300, cache.Capacity);
        cache.Append(Rows(-2, 7, 4, 1), Rows(-2, 7, 4, -1), rowStart: 2, rows: 5); // rows 0..4 of the sequence
        Assert.Equal(300, cache.Capacity);
        AssertRows((CpuTensor)cache.K, 5, 4, 1);
        cache.Reserve(100); // never shrinks
        Assert.Equal(300, cache.Capacity);
        cache.Reserve(1000); // after the first append: grows, keeping the rows
        Assert.Equal(1000, cache.Capacity);
        AssertRows((CpuTensor)cache.V, 5, 4, -1);
    }

    [Fact]
    public void TruncateForgetsTheTailAndRejectsGrowingIt()
    {
        var cache = new KvCache(new CpuBackend(), cols: 2, capacity: 8);
        cache.Append(Rows(0, 8, 2, 1), Rows(0, 8, 2, 1));
        cache.Truncate(5);
        Assert.Equal(5, cache.Length);
        AssertRows((CpuTensor)cache.K, 5, 2, 1);
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.Truncate(6));
    }

    [Fact]
    public void DisposeGivesTheBuffersBackAndRefusesLaterUse()
    {
        var cache = new KvCache(new CpuBackend(), cols: 4, capacity: 8);
        cache.Append(Rows(0, 5, 4, 1), Rows(0, 5, 4, -1));
        cache.Dispose();
        Assert.Equal(0, cache.Length);
        Assert.Throws<ObjectDisposedException>(() => cache.K);
        Assert.Throws<ObjectDisposedException>(() => cache.Append(Rows(0, 1, 4, 1), Rows(0, 1, 4, -1)));
        cache.Dispose(); // twice is harmless
    }
}
