using Apb.Backends;
using Apb.Backends.Cuda;
using Apb.Model;
using Apb.Runtime;
using Apb.Strategies;
using Apb.Tests.Distributed;

namespace Apb.Gpu.Tests;

/// <summary>
/// APB's machinery without host round trips (issue #22): a whole APB prefill on 4 in-process ranks, each its own
/// CudaBackend on this GPU, with --timings' host-transfer accounting (Profile.LayerTransfers: the driver copies inside
/// the layers, less the communicator's, which passes tensors through host memory between in-process ranks).
/// Inside the layers nothing may come back to the host (a download waits for all queued work: a round trip), and the
/// only upload is the rope positions of a forward's first layer (the later layers rotate at the same positions, so the
/// backend keeps them): at most one per forward, the block's and the query's star phase.
/// </summary>
public static class MachineryCases
{
    public static IEnumerable<GpuCase> All()
    {
        foreach (var scorer in new[] { ScorerKind.Retaining, ScorerKind.Query })
            yield return new("passing", $"APB prefill on 4 CUDA ranks ({ScorerChoice.Label(scorer)}, random weights): no host round trip inside the layers",
                c => NoRoundTrips(c, scorer));
    }

    static void NoRoundTrips(GpuCheck c, ScorerKind scorer)
    {
        const int ranks = 4, context = 1024, queryTokens = 16, anchor = 64;
        var config = ModelShapes.Get("small");
        var options = new StrategyOptions
        {
            Strategy = StrategyKind.Apb, Ranks = ranks, FallbackBelow = 0, AnchorLength = anchor, PassingLength = 32, Scorer = scorer,
            Timings = true, RetainingHeadsPath = scorer == ScorerKind.Retaining ? RetainingHeadsFile.Write(config, 64, seed: 7) : null,
        };
        using var group = RankGroup.Create(config, options, _ => new CudaBackend(c.Gpu.Context.Device.Ordinal), b => RandomWeights.Create(config, b));
        var ids = Enumerable.Range(0, context + queryTokens).Select(_ => c.Rng.Next(config.VocabSize)).ToArray();
        var r = group.Prefill(new PrefillRequest(ids[..context], ids[context..]));
        var profiles = group.Reports(r.Sequence).Select(x => x.Prefill!).ToArray();
        group.Release([r.Sequence]);

        int nonFinite = r.Logits.Count(x => !float.IsFinite(x));
        c.Record("prefill logits finite", nonFinite, 0, nonFinite == 0 && r.Logits.Length == config.VocabSize, $"{r.Logits.Length} logits");
        // One rope upload per forward at most: the block's rows (anchor + block, plus the last rank's query) and d/2
        // frequencies, as ints; the star phase's query rows likewise.
        long ropeBound = 2L * (anchor + context / ranks + queryTokens + config.HeadDim / 2) * 4;
        for (int rank = 0; rank < ranks; rank++)
        {
            var t = profiles[rank].LayerTransfers;
            c.Record($"rank {rank}: device-to-host bytes inside the layers", t.ToHostBytes, 0, t.ToHostBytes == 0 && t.ToHostCopies == 0,
                $"{t.ToHostCopies} copies; {profiles[rank].HostBytes} host bytes in all (communication and embedding included)");
            c.Record($"rank {rank}: host-to-device copies inside the layers (rope positions only)", t.ToDeviceCopies, 2,
                t.ToDeviceCopies <= 2 && t.ToDeviceBytes <= ropeBound, $"{t.ToDeviceBytes} bytes, at most {ropeBound}");
        }
    }
}
