using Apb.Backends.Cpu;
using Apb.Engine;
using Apb.Runtime;
using Apb.Strategies;
using Apb.Tests.Distributed;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Runtime;

/// <summary>
/// The resident rank group: weights stay, each request is a sequence that is freed when it ends (or fails), decode
/// steps batch several sequences, and a refused or failed request leaves the group serving the next one.
/// </summary>
public class RankGroupTests
{
    internal static RankGroup Group(Loaded m, StrategyOptions o, Func<int, Backends.IBackend>? backends = null) =>
        RankGroup.Create(m.Config, o, backends ?? (_ => new CpuBackend()), _ => m.Weights);

    internal static int Held(RankGroup g) => g.LocalRanks.Sum(r => r.SequenceCount);

    [Fact(Timeout = 60_000)]
    public async Task ARequestThatFailsMidPrefillIsFreedOnEveryRankAndTheGroupGoesOn()
    {
        var m = LoadModel("embedded-random");
        var backends = Enumerable.Range(0, 3).Select(_ => new FaultyBackend()).ToArray();
        using var g = Group(m, Options(StrategyKind.Ring, 3), r => backends[r]);
        var context = Ids(60, 1, m.Config.VocabSize);
        var query = Ids(3, 2, m.Config.VocabSize);
        var want = FullLogits(m, context, query);

        backends[1].Arm(layer => { if (layer == 2) throw new ApbException("out of memory (injected)"); });
        var e = await Assert.ThrowsAsync<ApbException>(() => Task.Run(() => g.Prefill(new PrefillRequest(context, query))));
        Assert.StartsWith("rank 1 failed in layer 2 attention (ring prefill)", e.Message);
        Assert.Equal(0, Held(g)); // every rank let go of the caches it had filled for layers 0 and 1

        backends[1].Arm(_ => { });
        var r = g.Prefill(new PrefillRequest(context, query, AllLogits: true));
        Assert.True(RelativeError(r.Logits, want) < 1e-5);
        g.Release([r.Sequence]);
        Assert.Equal(0, Held(g));
    }

    [Fact(Timeout = 60_000)]
    public async Task ACancelledPrefillStopsOnEveryRankAtTheSameLayerAndIsFreed()
    {
        var m = LoadModel("embedded-random");
        var backends = Enumerable.Range(0, 4).Select(_ => new FaultyBackend()).ToArray();
        using var g = Group(m, Options(StrategyKind.Apb, 4) with { AnchorLength = 8, PassingLength = 4 }, r => backends[r]);
        using var cancel = new CancellationTokenSource();
        int stoppedAt = -1;
        // The client goes away while rank 3 works on layer 1: every rank must stop at a layer boundary, none waits.
        backends[3].Arm(layer => { if (layer == 1) cancel.Cancel(); });
        backends[0].Arm(layer => stoppedAt = layer);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Task.Run(() =>
            g.Prefill(new PrefillRequest(Ids(80, 1, m.Config.VocabSize), Ids(3, 2, m.Config.VocabSize)), cancel.Token)));
        Assert.InRange(stoppedAt, 1, 2);
        Assert.Equal(0, Held(g));
        var next = g.Prefill(new PrefillRequest(Ids(80, 1, m.Config.VocabSize), Ids(3, 2, m.Config.VocabSize)));
        Assert.Equal(4, Held(g));
        g.Release([next.Sequence]);
    }

    [Theory]
    [InlineData(StrategyKind.Zigzag, 3)]
    [InlineData(StrategyKind.Apb, 4)]
    public void ABatchedDecodeStepEqualsEachSequenceAlone(StrategyKind strategy, int ranks)
    {
        var m = LoadModel("embedded-random");
        var o = Options(strategy, ranks) with { AnchorLength = 8, PassingLength = 4 };
        var prompts = new[] { (Ids(50, 1, m.Config.VocabSize), Ids(3, 2, m.Config.VocabSize)),
                              (Ids(70, 3, m.Config.VocabSize), Ids(4, 4, m.Config.VocabSize)),
                              (Ids(40, 5, m.Config.VocabSize), Ids(2, 6, m.Config.VocabSize)) };

        // Alone: each sequence prefilled and decoded three steps by itself.
        var alone = new List<float[]>[prompts.Length];
        using (var g = Group(m, o))
            for (int i = 0; i < prompts.Length; i++)
            {
                var r = g.Prefill(new PrefillRequest(prompts[i].Item1, prompts[i].Item2));
                alone[i] = [r.Logits];
                for (int step = 0; step < 3; step++) alone[i].Add(g.Decode([r.Sequence], [Sampler.ArgMax(alone[i][^1])])[0]);
                g.Release([r.Sequence]);
            }

        // Together: the same prefills (the third with full attention on rank 0 alone), then batched steps.
        using (var g = Group(m, o))
        {
            var seqs = prompts.Select((p, i) => g.Prefill(new PrefillRequest(p.Item1, p.Item2,
                Options: i == 2 ? o with { Strategy = StrategyKind.Full } : null))).ToArray();
            Assert.False(seqs[2].Plan.Distributed);
            var last = seqs.Select(s => s.Logits).ToArray();
            for (int i = 0; i < 2; i++) Assert.Equal(alone[i][0], last[i]);
            for (int step = 0; step < 3; step++)
            {
                var fed = last.Select(l => Sampler.ArgMax(l)).ToArray();
                var next = g.Decode(seqs.Select(s => s.Sequence).ToArray(), fed);
                for (int i = 0; i < 2; i++)
                    Assert.True(RelativeError(next[i], alone[i][step + 1]) < 1e-5, $"sequence {i}, step {step + 1}");
                last = next;
            }
            // A greedy step answers with the argmax of the logits a plain step gives: the first two prompts again, in a
            // second group, decoded with DecodeGreedy from the same tokens give the argmax of each step's logits above.
            using (var twin = Group(m, o))
            {
                var copies = prompts.Take(2).Select(p => twin.Prefill(new PrefillRequest(p.Item1, p.Item2))).ToArray();
                var replay = new List<int[]>();
                for (int step = 0; step < 3; step++)
                    replay.Add(twin.DecodeGreedy(copies.Select(s => s.Sequence).ToArray(), [Sampler.ArgMax(alone[0][step]), Sampler.ArgMax(alone[1][step])]));
                for (int step = 0; step < 3; step++)
                    for (int i = 0; i < 2; i++)
                        Assert.Equal(Sampler.ArgMax(alone[i][step + 1]), replay[step][i]);
            }
            g.Release(seqs.Select(s => s.Sequence).ToArray());
            Assert.Equal(0, Held(g));
        }
    }

    [Fact]
    public void CommandsCrossTheControlChannelUnchanged()
    {
        var plan = SequencePlanner.Plan(Options(StrategyKind.Apb, 4) with { AnchorLength = 16, PassingLength = 8 }, 100, 5, 3);
        var prefill = new GroupCommand.Prefill(7, [1, 2, 3], [4, 5], plan, 33, true, true, false);
        var back = (GroupCommand.Prefill)GroupCommand.Parse(GroupCommand.Encode(prefill));
        Assert.Equal(prefill.Context, back.Context);
        Assert.Equal(prefill.Query, back.Query);
        Assert.Equal((7, 33, true, true, false), (back.Sequence, back.DecodeBudget, back.AllLogits, back.Cancellable, back.Timings));
        Assert.Equal(plan.Plan!.ToString(), back.Plan.Plan!.ToString());
        Assert.Equal((plan.Strategy, plan.Ranks, plan.Scorer, (float?)null), (back.Plan.Strategy, back.Plan.Ranks, back.Plan.Scorer, back.Plan.NoveltyWeight));
        // A novelty weight given (0 included: the term off) reaches the followers as given.
        foreach (float w in new[] { 0f, 0.25f })
        {
            var weighted = plan with { NoveltyWeight = w };
            var got = (GroupCommand.Prefill)GroupCommand.Parse(GroupCommand.Encode(prefill with { Plan = weighted }));
            Assert.Equal(w, got.Plan.NoveltyWeight);
        }
        // So does a query-free anchor (the plan's query rows are 0; the label says why).
        var queryFree = SequencePlanner.Plan(Options(StrategyKind.Apb, 4) with { AnchorLength = 16, PassingLength = 8, AnchorQuery = false, Scorer = ScorerKind.Retaining }, 100, 5, 3);
        var free = (GroupCommand.Prefill)GroupCommand.Parse(GroupCommand.Encode(prefill with { Plan = queryFree }));
        Assert.Equal((false, 0), (free.Plan.AnchorQuery, free.Plan.Plan!.QueryLength));
        Assert.True(back.Plan.AnchorQuery);
        // And the first layer that passes (0 unless given).
        Assert.Equal(0, back.Plan.PassingFromLayer);
        var later = (GroupCommand.Prefill)GroupCommand.Parse(GroupCommand.Encode(prefill with { Plan = plan with { PassingFromLayer = 2 } }));
        Assert.Equal(2, later.Plan.PassingFromLayer);
        // And a passing budget, which changes what each rank reads: the followers rebuild the same plan.
        var budgeted = SequencePlanner.Plan(Options(StrategyKind.Apb, 4) with { AnchorLength = 16, PassingLength = 8, PassingBudget = 10 }, 100, 5, 3);
        var capped = (GroupCommand.Prefill)GroupCommand.Parse(GroupCommand.Encode(prefill with { Plan = budgeted }));
        Assert.Equal(10, capped.Plan.Plan!.PassingBudget);
        Assert.Equal(budgeted.Plan!.PassingRows(3), capped.Plan.Plan.PassingRows(3));
        Assert.Equal(0, back.Plan.Plan.PassingBudget);

        var decode = (GroupCommand.Decode)GroupCommand.Parse(GroupCommand.Encode(new GroupCommand.Decode([3, 9], [11, 12], Greedy: true)));
        Assert.Equal(new[] { 3, 9 }, decode.Sequences);
        Assert.Equal(new[] { 11, 12 }, decode.Tokens);
        Assert.True(decode.Greedy);
        Assert.IsType<GroupCommand.Shutdown>(GroupCommand.Parse(GroupCommand.Encode(new GroupCommand.Shutdown())));
        var e = Assert.Throws<ApbException>(() => GroupCommand.Parse([99]));
        Assert.Contains("unknown command", e.Message);
    }
}
