using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Checkpoints;

namespace Apb.Tests.Distributed;

/// <summary>
/// A CPU backend that can fail or stall in a chosen layer's attention, for the fault tests: production types carry no
/// test hooks. Every layer rotates q and k once (two Rope calls) before its attention, in prefill and in decode, so the
/// layer of an attention call is (Rope calls / 2) - 1 since the last <see cref="Arm"/>. Its Upload and Download count in
/// <see cref="Transfers"/> as a device backend's would, so the host-transfer accounting can be tested without a GPU.
/// </summary>
sealed class FaultyBackend : IBackend, IStepGraphs
{
    readonly CpuBackend _b = new();
    bool _recording;

    public bool AttentionQkFp8 { get => _b.AttentionQkFp8; set => _b.AttentionQkFp8 = value; }

    /// <summary>Step graphs as a recording backend sees them: a step run through <see cref="Replay{T}"/> may not read the device.</summary>
    public bool StepGraphs { get; set; }

    /// <summary>Steps run through <see cref="Replay{T}"/> with <see cref="StepGraphs"/> on.</summary>
    public int Replays { get; private set; }

    public T Replay<T>(Func<T> step)
    {
        if (!StepGraphs) return step();
        Replays++;
        _recording = true;
        try { return step(); }
        finally { _recording = false; }
    }

    /// <summary>The layer boundaries the model reported inside recorded steps, as (done, layers).</summary>
    public List<(int Done, int Layers)> Boundaries { get; } = [];

    public void Boundary(int done, int layers)
    {
        if (_recording) Boundaries.Add((done, layers));
    }

    void NotRecording(string what)
    {
        if (_recording) throw new InvalidOperationException($"{what} inside a recorded step: a graph cannot wait for the device or read it");
    }
    int _ropes;
    Action<int>? _beforeAttention, _beforeRotation;

    /// <summary>
    /// From now on, <paramref name="beforeAttention"/> runs with the layer before each attention call, and
    /// <paramref name="beforeRotation"/> before each layer's first Rope: a layer's earliest step, before any transfer a
    /// strategy starts in it (a ring posts its first send before its first attention call).
    /// </summary>
    public void Arm(Action<int>? beforeAttention, Action<int>? beforeRotation = null)
    {
        _ropes = 0;
        _beforeAttention = beforeAttention;
        _beforeRotation = beforeRotation;
    }

    public string Name => _b.Name;
    public IPassingOps Passing => _b.Passing;
    public MemoryStats Memory => _b.Memory;
    public int ActivationBytes => _b.ActivationBytes;
    public void ResetPeakMemory() => _b.ResetPeakMemory();
    public Tensor Allocate(int rows, int cols) => _b.Allocate(rows, cols);
    public Tensor AllocateF32(int rows, int cols) => ((IBackend)_b).AllocateF32(rows, cols);
    public IWeight Load(WeightView w) => _b.Load(w);
    public HostTransfers Transfers { get; private set; }

    public void Upload(ReadOnlySpan<float> src, Tensor dst)
    {
        _b.Upload(src, dst);
        Transfers += new HostTransfers(src.Length * 4L, 1, 0, 0);
    }

    public void Download(Tensor src, Span<float> dst)
    {
        NotRecording("Download");
        _b.Download(src, dst);
        Transfers += new HostTransfers(0, 0, (long)src.Rows * src.Cols * 4, 1);
    }
    public void Copy(Tensor src, int srcRow, int srcCol, Tensor dst, int dstRow, int dstCol, int rows, int cols) =>
        _b.Copy(src, srcRow, srcCol, dst, dstRow, dstCol, rows, cols);
    public void Embed(ReadOnlySpan<int> ids, IWeight table, Tensor output) => _b.Embed(ids, table, output);
    public void RmsNorm(Tensor x, IWeight weight, float eps, Tensor output) => _b.RmsNorm(x, weight, eps, output);
    public void Linear(Tensor x, IWeight w, IWeight? bias, Tensor output) => _b.Linear(x, w, bias, output);
    public void AddInPlace(Tensor x, Tensor y) => _b.AddInPlace(x, y);
    public void AddRmsNorm(Tensor x, Tensor y, IWeight weight, float eps, Tensor output) => _b.AddRmsNorm(x, y, weight, eps, output);
    public void SiluMul(Tensor gate, Tensor up, Tensor output) => _b.SiluMul(gate, up, output);
    public void Silu(Tensor x) => _b.Silu(x);

    public void Rope(Tensor x, int heads, ReadOnlySpan<int> positions, RopeTable table)
    {
        if (_ropes % 2 == 0) _beforeRotation?.Invoke(_ropes / 2);
        _ropes++;
        _b.Rope(x, heads, positions, table);
    }

    public void Attention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, AttentionMask mask, Tensor output, Tensor? lse, int window = 0)
    {
        _beforeAttention?.Invoke(_ropes / 2 - 1);
        _b.Attention(q, k, v, heads, kvHeads, mask, output, lse, window);
    }

    public void MergeAttention(Tensor acc, Tensor accLse, Tensor part, Tensor partLse, int heads) =>
        _b.MergeAttention(acc, accLse, part, partLse, heads);
    public void MergeAttentionParts(Tensor parts, Tensor lses, int count, int heads, Tensor output) =>
        _b.MergeAttentionParts(parts, lses, count, heads, output);
    public void Synchronize()
    {
        NotRecording("Synchronize");
        _b.Synchronize();
    }
    public void Dispose() => _b.Dispose();
}
