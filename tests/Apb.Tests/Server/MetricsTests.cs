using Apb.Backends.Cpu;
using Apb.Engine;
using Apb.Model;
using Apb.Runtime;
using Apb.Server;
using Apb.Serving;
using Apb.Strategies;
using Xunit;

namespace Apb.Tests.Server;

/// <summary>
/// GET /metrics while a request decodes on two APB ranks (held between two steps) and after it ends: the batch, the
/// KV-cache bytes of each rank (equal to the rows the ranks hold), the token counters and rates, requests by status.
/// </summary>
[Collection(ServerCollection.Name)]
public class MetricsTests
{
    [Fact(Timeout = 120_000)]
    public async Task MetricsShowTheBatchAndEachRanksCacheAsTheyAre()
    {
        var bundle = Harness.Bundle;
        var weights = LlamaWeights.Load(bundle.Config, bundle.Checkpoint, new CpuBackend());
        var o = new StrategyOptions { Strategy = StrategyKind.Apb, Ranks = 2, FallbackBelow = 0, AnchorLength = 24, PassingLength = 8 };
        using var group = RankGroup.Create(bundle.Config, o, _ => new CpuBackend(), _ => weights);
        using var scheduler = new BatchScheduler(group, bundle.Tokenizer, bundle.StopTokens.ToHashSet(), new SchedulerOptions());
        using var atStep = new SemaphoreSlim(0);
        using var resume = new ManualResetEventSlim();
        int steps = 0;
        scheduler.Stepped += (_, _) =>
        {
            if (++steps != 3) return;
            atStep.Release();
            resume.Wait(TimeSpan.FromSeconds(60));
        };
        using var model = new ServedModel(Harness.Id, bundle.Tokenizer, bundle.StopTokens, scheduler);
        await using var server = await Harness.StartAsync(model);
        using var http = Harness.Http(server);

        string prompt = string.Join(" ", Enumerable.Range(0, 120).Select(j => $"w{j * 7 % 97}"));
        var request = Harness.PostAsync(http, "/v1/completions",
            $$$"""{"prompt": "{{{prompt}}}", "max_tokens": 8, "temperature": 0, "logit_bias": {"{{{bundle.StopTokens.First()}}}": -100}}""");
        try
        {
            Assert.True(await atStep.WaitAsync(TimeSpan.FromSeconds(60)), "the request never reached its third decode step");
            // Held after the third step: one sequence in the batch, and each rank's cache is the rows the rank holds.
            Assert.Equal(1, await Harness.MetricAsync(http, "apb_batch_size"));
            Assert.Equal(0, await Harness.MetricAsync(http, "apb_engine_waiting"));
            long rowBytes = (long)bundle.Config.NumHiddenLayers * 2 * bundle.Config.KvDim * group.LocalRanks[0].Backend.ActivationBytes;
            var (_, rows) = group.Describe(1); // the first sequence of a new group
            Assert.Equal(2, rows.Length);
            Assert.All(rows, r => Assert.True(r > 0));
            for (int r = 0; r < 2; r++)
                Assert.Equal(rows[r] * rowBytes, await Harness.MetricAsync(http, $"apb_kv_cache_bytes{{rank=\"{r}\"}}"));
            Assert.Equal(3, await Harness.MetricAsync(http, "apb_engine_generation_tokens_total"));
        }
        finally { resume.Set(); }

        var (status, body) = await request;
        Assert.Equal(200, status);
        Assert.Equal(8, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        int promptTokens = body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        Assert.Equal(0, await Harness.MetricAsync(http, "apb_batch_size"));
        Assert.Equal(0, await Harness.MetricAsync(http, "apb_kv_cache_bytes{rank=\"0\"}"));
        Assert.Equal(0, await Harness.MetricAsync(http, "apb_kv_cache_bytes{rank=\"1\"}"));
        Assert.Equal(promptTokens, await Harness.MetricAsync(http, "apb_engine_prompt_tokens_total"));
        Assert.Equal(8, await Harness.MetricAsync(http, "apb_engine_generation_tokens_total"));
        Assert.True(await Harness.MetricAsync(http, "apb_prompt_throughput_tokens_per_second") > 0);
        Assert.True(await Harness.MetricAsync(http, "apb_generation_throughput_tokens_per_second") > 0);
        Assert.Equal(1, await Harness.MetricAsync(http, "apb_requests_total{endpoint=\"/v1/completions\",status=\"200\"}"));
    }
}
