using Apb.Backends.Cpu;
using Apb.Engine;
using Apb.Model;
using Apb.Runtime;
using Apb.Serving;
using Apb.Strategies;
using Xunit;

namespace Apb.Tests.Serving;

/// <summary>
/// Continuous batching: requests that share decode steps (and chunked prefills) produce exactly what each produces
/// alone; a request whose client goes away is dropped and its memory freed while the others go on.
/// </summary>
public class BatchSchedulerTests
{
    static readonly ModelBundle Bundle = ModelBundle.Open(Repo.TinyModel);
    static readonly LlamaWeights Weights = LlamaWeights.Load(Bundle.Config, Bundle.Checkpoint, new CpuBackend());

    static RankGroup Group(StrategyOptions o) => RankGroup.Create(Bundle.Config, o, _ => new CpuBackend(), _ => Weights);

    static BatchScheduler Scheduler(RankGroup g, int maxBatch = 8, int chunk = 8192) =>
        new(g, Bundle.Tokenizer, Bundle.StopTokens.ToHashSet(), new SchedulerOptions { MaxBatch = maxBatch, PrefillChunk = chunk });

    static CompletionJob Job(string text, int maxNew, double temperature = 0, int? seed = null) =>
        new(PromptTokens.FromText(Bundle.Tokenizer, text), new SamplingOptions { MaxNewTokens = maxNew, Temperature = temperature, Seed = seed }, []);

    static string Document(int i) =>
        string.Join(" ", Enumerable.Range(0, 40 + 13 * i).Select(j => $"w{(j * 7 + i) % 97}")) + $"\n\nquestion {i}?";

    static async Task<string[]> RunAll(BatchScheduler s, IReadOnlyList<CompletionJob> jobs) =>
        (await Task.WhenAll(jobs.Select(j => s.RunAsync(j, null, CancellationToken.None)))).Select(r => r.Text).ToArray();

    [Theory(Timeout = 120_000)]
    [InlineData(StrategyKind.Full, 1)]
    [InlineData(StrategyKind.Ring, 3)]
    [InlineData(StrategyKind.Apb, 4)]
    public async Task RequestsBatchedTogetherGiveWhatEachGivesAlone(StrategyKind strategy, int ranks)
    {
        var o = new StrategyOptions { Strategy = strategy, Ranks = ranks, FallbackBelow = 0, AnchorLength = 24, PassingLength = 8 };
        if (strategy == StrategyKind.Full) o = o with { AnchorLength = null, PassingLength = null };
        var jobs = Enumerable.Range(0, 6).Select(i => Job(Document(i), maxNew: 6 + i, temperature: i % 2 == 0 ? 0 : 0.8, seed: i)).ToArray();

        var alone = new string[jobs.Length];
        using (var g = Group(o))
        using (var s = Scheduler(g, maxBatch: 1))
            for (int i = 0; i < jobs.Length; i++) alone[i] = (await s.RunAsync(jobs[i], null, CancellationToken.None)).Text;

        using (var g = Group(o))
        using (var s = Scheduler(g, maxBatch: 8))
        {
            var together = await RunAll(s, jobs);
            Assert.Equal(alone, together);
            Assert.True(s.DecodeSteps < jobs.Sum(j => j.Sampling.MaxNewTokens), $"{s.DecodeSteps} steps: the requests did not share them");
            Assert.Equal(0, g.LocalRanks.Sum(r => r.SequenceCount)); // every sequence released at its end
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task APromptPrefilledInChunksGivesWhatOnePrefillGives()
    {
        var o = new StrategyOptions { Strategy = StrategyKind.Full, Ranks = 1 };
        var jobs = new[] { Job(Document(9), 8), Job(Document(1), 12), Job(Document(4), 5) };
        using var g1 = Group(o);
        using var whole = Scheduler(g1, chunk: 8192);
        var want = await RunAll(whole, jobs);
        using var g2 = Group(o);
        using var chunked = Scheduler(g2, chunk: 32); // every prompt here is longer than 32 tokens: several chunks each
        Assert.Equal(want, await RunAll(chunked, jobs));
    }

    [Fact(Timeout = 120_000)]
    public async Task ACancelledRequestIsDroppedAndTheOthersFinish()
    {
        var o = new StrategyOptions { Strategy = StrategyKind.Ring, Ranks = 2 };
        using var g = Group(o);
        using var s = Scheduler(g);
        using var cancel = new CancellationTokenSource();
        int pieces = 0;
        var doomed = s.RunAsync(Job(Document(2), 200), _ => { if (++pieces == 3) cancel.Cancel(); }, cancel.Token);
        var survivor = s.RunAsync(Job(Document(3), 20), null, CancellationToken.None);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => doomed);
        var r = await survivor;
        Assert.True(r.FinishReason == "stop" || r.CompletionTokens == 20, $"{r.FinishReason} after {r.CompletionTokens} tokens");
        Assert.Equal(0, g.LocalRanks.Sum(x => x.SequenceCount));
    }

    [Fact]
    public void ARequestTheStrategyCannotRunIsRefusedBeforeItWaits()
    {
        using var g = Group(new StrategyOptions { Strategy = StrategyKind.Ring, Ranks = 4 });
        using var s = Scheduler(g);
        var e = Assert.Throws<InvalidRequestException>(() => s.Check(PromptTokens.FromText(Bundle.Tokenizer, "hi\n\nyo"), 4));
        Assert.Contains("4 ranks were asked for", e.Message);
        var tooLong = Assert.Throws<InvalidRequestException>(() => s.Check(PromptTokens.FromText(Bundle.Tokenizer, Document(1)), Bundle.Config.MaxPositionEmbeddings));
        Assert.Equal("context_length_exceeded", tooLong.Code);
    }
}
