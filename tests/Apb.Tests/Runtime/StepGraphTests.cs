using Apb.Engine;
using Apb.Model;
using Apb.Runtime;
using Apb.Tests.Distributed;
using Xunit;
using static Apb.Tests.Distributed.DistributedFixture;

namespace Apb.Tests.Runtime;

/// <summary>
/// How a session hands decode steps to a backend that records them as graphs (<see cref="Backends.IStepGraphs"/>; CUDA
/// graphs on the GPU, whose replays the GPU tests check bit for bit): every step but the first goes through Replay, and
/// nothing inside one reads the device (the logits are read after it).
/// </summary>
public class StepGraphTests
{
    [Fact]
    public void ASessionReplaysEveryDecodeStepButTheFirstAndReadsNothingInsideOne()
    {
        var m = LoadModel("embedded-random");
        var prompt = Ids(20, 3, m.Config.VocabSize);
        (float[][] Logits, int Replays, List<(int, int)> Boundaries) Run(bool graphs)
        {
            var backend = new FaultyBackend { StepGraphs = graphs };
            using var model = new LlamaModel(m.Config, m.Weights, backend);
            using var s = new LocalSession(model, prompt.Length + 6);
            var logits = s.Prefill(prompt, []);
            var steps = new List<float[]>();
            for (int i = 0; i < 5; i++) steps.Add(logits = s.Decode(Sampler.ArgMax(logits)));
            return ([.. steps], backend.Replays, backend.Boundaries);
        }
        var launched = Run(graphs: false);
        var replayed = Run(graphs: true);
        Assert.Equal(0, launched.Replays);
        Assert.Equal(4, replayed.Replays);
        Assert.Equal(launched.Logits, replayed.Logits);
        // Inside each recorded step the model reports every layer boundary but the last, in order: where a recording
        // may cut the step into segments.
        int layers = m.Config.NumHiddenLayers;
        var perStep = Enumerable.Range(1, layers - 1).Select(d => (d, layers)).ToList();
        Assert.Equal(Enumerable.Repeat(perStep, 4).SelectMany(x => x).ToList(), replayed.Boundaries);
        Assert.Empty(launched.Boundaries);
    }
}
