using Apb.Engine;
using Apb.Model;
using Apb.Runtime;
using Apb.Tests.Distributed;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Model;

/// <summary>
/// The model names each layer's o_proj to the backend before that layer's attention (IBackend.PrefetchDuringAttention:
/// the CUDA decode kernel may bring it into L2 while it reads the cache). A hint for the wrong layer, or one that comes
/// after the attention, would fetch a weight nobody reads next.
/// </summary>
public class PrefetchHintTests
{
    [Fact]
    public void EveryLayerNamesItsOwnOProjBeforeItsAttentionInPrefillAndDecode()
    {
        var m = LoadModel("embedded-random");
        var backend = new FaultyBackend();
        using var model = new LlamaModel(m.Config, m.Weights, backend);
        using var s = new LocalSession(model, 32);
        backend.Arm(null);   // layers are counted from here, across forwards: the prefill's, then three decode steps'
        var logits = s.Prefill(Ids(20, 3, m.Config.VocabSize), []);
        for (int i = 0; i < 3; i++) logits = s.Decode(Sampler.ArgMax(logits));
        int layers = m.Config.NumHiddenLayers;
        var want = Enumerable.Range(0, 4 * layers).Select(i => (m.Weights.Layers[i % layers].OProj.Name, i)).ToList();
        Assert.Equal(want, backend.Prefetches);
    }
}
