using Apb.Backends.Cpu;
using Apb.Checkpoints;
using Apb.Engine;
using Apb.Model;
using Apb.Runtime;
using Xunit;

namespace Apb.Tests.EngineTests;

/// <summary>
/// A session is one request: after Dispose it refuses work (its caches went back to the backend) while the model it
/// ran on serves the next session unchanged, the way the server reuses one loaded model.
/// </summary>
public class LocalSessionTests
{
    [Fact]
    public void DisposedSessionRefusesWorkAndTheModelServesTheNextOne()
    {
        string dir = Repo.Fixture("llama-tiny");
        using var ckpt = CheckpointWeights.Open(dir);
        var model = LlamaModel.Load(ModelConfig.Load(Path.Combine(dir, "config.json")), ckpt, new CpuBackend());
        int[] prompt = [1, 5, 9, 2, 7];

        var first = new LocalSession(model, prompt.Length + 1);
        var a = first.Prefill(prompt, []);
        first.Dispose();
        Assert.Throws<ObjectDisposedException>(() => first.Decode(3));
        Assert.Throws<ObjectDisposedException>(() => first.Prefill(prompt, []));
        first.Dispose(); // twice is harmless

        using var second = new LocalSession(model, prompt.Length + 1);
        Assert.Equal(a, second.Prefill(prompt, []));
    }
}
