using Apb.Runtime;
using Apb.Strategies;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;
using static Apb.Tests.Runtime.RankGroupTests;

namespace Apb.Tests.Runtime;

/// <summary>
/// Tests that weigh the process's managed heap (GC.GetTotalMemory) run alone: the heap is the whole process's, so a test
/// running beside them would count its own allocations against theirs (a refusal test once saw 1.8 MB another test made).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessMemoryCollection
{
    public const string Name = "process memory";
}

/// <summary>A refused request holds nothing, measured on the heap with nothing else running.</summary>
[Collection(ProcessMemoryCollection.Name)]
public sealed class RankGroupRefusalTests
{
    [Fact]
    public void RefusedRequestsCostNothingAndTheGroupServesTheNextOne()
    {
        var m = LoadModel("embedded-random");
        using var g = Group(m, Options(StrategyKind.Apb, 4) with { AnchorLength = 8, PassingLength = 4 });
        var context = Ids(60, 1, m.Config.VocabSize);
        var query = Ids(3, 2, m.Config.VocabSize);
        var want = g.Prefill(new PrefillRequest(context, query)).Logits;

        long before = GC.GetTotalMemory(forceFullCollection: true);
        for (int i = 0; i < 20; i++)
        {
            // Fewer context tokens than ranks, and a query longer than the anchor: refused by the plan, before any rank works.
            var short_ = Assert.Throws<ApbException>(() => g.Prefill(new PrefillRequest(Ids(2, 3, m.Config.VocabSize), query)));
            Assert.Contains("4 ranks were asked for", short_.Message);
            var longQuery = Assert.Throws<ApbException>(() => g.Prefill(new PrefillRequest(context, Ids(20, 4, m.Config.VocabSize))));
            Assert.Contains("longer than the anchor", longQuery.Message);
        }
        long after = GC.GetTotalMemory(forceFullCollection: true);
        // 40 refusals hold nothing: what is left is at most noise (the first sequence is still held: same before and after).
        Assert.True(after - before < 256 * 1024, $"host memory grew by {after - before} bytes over 40 refused requests");
        Assert.Equal(4, Held(g)); // the first request's sequence, on each of the 4 ranks

        var again = g.Prefill(new PrefillRequest(context, query));
        Assert.Equal(want, again.Logits);
        Assert.Equal(8, Held(g));
    }
}
