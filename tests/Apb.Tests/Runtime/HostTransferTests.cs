using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Diagnostics;
using Apb.Runtime;
using Apb.Strategies;
using Apb.Tests.Distributed;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Runtime;

/// <summary>
/// The host&lt;-&gt;device accounting of --timings, without a GPU: the CPU backend makes no such copies, and a prefill's
/// profile counts the copies a backend reports inside the layers (less the communicator's) apart from those around
/// them. <see cref="FaultyBackend"/> counts its uploads and downloads as a device backend would; tests/Apb.Gpu.Tests
/// asserts the same on CUDA, where the counts are the driver copies themselves.
/// </summary>
public class HostTransferTests
{
    [Fact]
    public void TheCpuBackendReportsNoHostTransfers()
    {
        using var b = new CpuBackend();
        using var t = b.Allocate(3, 4);
        b.Upload(new float[12], t);
        b.Download(t, new float[12]);
        Assert.Equal(default, ((IBackend)b).Transfers);
    }

    [Fact]
    public void ProfileValuesCarryTheHostTransfers()
    {
        var b = new FaultyBackend();
        var p = new Profile(b);
        using var t = b.Allocate(2, 8);
        b.Upload(new float[16], t);  // before any layer: counts in all, not in the layers
        using (p.Layer()) b.Download(t, new float[16]);
        using (p.Layer())
        using (p.Measure("communication")) b.Upload(new float[16], t); // the communicator's: out of the layers' count
        var back = Profile.FromValues(p.ToValues());
        Assert.Equal(3 * 64, back.HostBytes);
        Assert.Equal(new HostTransfers(0, 0, 64, 1), back.LayerTransfers);
        Assert.Equal(back.HostBytes / 1e6, RankProfileTable.Values(back)[RankProfileTable.Columns.Count - 2]);
        Assert.Equal(64 / 1e6, RankProfileTable.Values(back)[^1]);
    }

    [Theory]
    [InlineData(ScorerKind.Query)]
    [InlineData(ScorerKind.Retaining)]
    public void AnApbPrefillCountsHostCopiesInsideTheLayersApartFromTheCommunicators(ScorerKind scorer)
    {
        var m = LoadModel("embedded-random");
        var backends = Enumerable.Range(0, 4).Select(_ => new FaultyBackend()).ToArray();
        var o = Options(StrategyKind.Apb, 4) with
        {
            AnchorLength = 8, PassingLength = 4, Scorer = scorer, Timings = true,
            RetainingHeadsPath = scorer == ScorerKind.Retaining ? RetainingHeadsFile.Write(m.Config, 16, seed: 5) : null,
        };
        using var g = RankGroup.Create(m.Config, o, r => backends[r], _ => m.Weights);
        var context = Ids(80, 1, m.Config.VocabSize);
        var query = Ids(3, 2, m.Config.VocabSize);

        Profile[] Prefill()
        {
            var r = g.Prefill(new PrefillRequest(context, query));
            try { return g.Reports(r.Sequence).Select(x => x.Prefill!).ToArray(); }
            finally { g.Release([r.Sequence]); }
        }

        // In-process ranks pass tensors through host memory: that is communication, not the layers' own.
        var clean = Prefill();
        Assert.All(clean, p => Assert.True(p.HostBytes > 0, "the communicator's uploads and downloads are counted in all"));
        Assert.All(clean, p => Assert.Equal(default, p.LayerTransfers));

        // A download inside layer 1 on rank 2 (as a scorer that read its scores on the host would make) is seen there.
        backends[2].Arm(layer =>
        {
            if (layer != 1) return;
            using var t = backends[2].Allocate(2, 4);
            backends[2].Download(t, new float[8]);
        });
        var dirty = Prefill();
        Assert.True(dirty[2].LayerTransfers.ToHostCopies >= 1, $"rank 2 counted {dirty[2].LayerTransfers} inside the layers");
        Assert.Equal(dirty[2].LayerTransfers.ToHostCopies * 32, dirty[2].LayerTransfers.ToHostBytes);
        Assert.Equal(0, dirty[2].LayerTransfers.ToDeviceBytes);
        foreach (int r in new[] { 0, 1, 3 }) Assert.Equal(default, dirty[r].LayerTransfers);
    }
}
