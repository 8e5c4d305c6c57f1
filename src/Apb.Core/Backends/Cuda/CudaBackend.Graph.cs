using Apb.Backends.Cuda.Native;

namespace Apb.Backends.Cuda;

/// <summary>Decode steps recorded and replayed as CUDA graphs (<see cref="IStepGraphs"/>, <see cref="StepGraph"/>).</summary>
public sealed unsafe partial class CudaBackend : IStepGraphs
{
    /// <summary>
    /// Whether decode steps run as graphs: APB_DECODE_GRAPH=1 (off by default: recorded whole, 0.6 ms per token slower
    /// than launching, cut into 8-16 segments level with it, never faster; docs/kernels/decode-step.md, versions 3 and 5), where the driver has
    /// cuGraphExecUpdate and APB_KERNEL_TIMES is off (its events time launches one by one).
    /// </summary>
    public bool StepGraphs
    {
        get => _stepGraphs && Driver.cuGraphExecUpdate != null && Context.Times == null;
        set => _stepGraphs = value;
    }

    bool _stepGraphs = Environment.GetEnvironmentVariable("APB_DECODE_GRAPH") == "1";
    StepGraph? _stepGraph;

    /// <summary>
    /// Graphs a recorded step is cut into at layer boundaries (APB_DECODE_GRAPH_SEGMENTS, default 8): each is launched
    /// when recorded, and the next recorded while it runs. 1 records the step whole (docs/kernels/decode-step.md).
    /// </summary>
    public int StepGraphSegments { get; set; } = SegmentsFromEnvironment();

    /// <summary>The most segments a step may be cut into: more than a model has layers cut after every layer anyway.</summary>
    public const int MaxStepGraphSegments = 1024;

    static int SegmentsFromEnvironment()
    {
        string? s = Environment.GetEnvironmentVariable("APB_DECODE_GRAPH_SEGMENTS");
        if (string.IsNullOrEmpty(s)) return 8;
        if (!int.TryParse(s, out int n) || n < 1 || n > MaxStepGraphSegments)
            throw new ApbException($"APB_DECODE_GRAPH_SEGMENTS={s}: expected an integer from 1 (the step as one graph) to {MaxStepGraphSegments}");
        return n;
    }

    /// <summary>
    /// Times a segment's graph was instantiated, steps replayed, and the segments of the last replayed step (all 0 when
    /// none ran).
    /// </summary>
    public (int Instantiations, long Replays, int Segments) StepGraphCounts =>
        (_stepGraph?.Instantiations ?? 0, _stepGraph?.Replays ?? 0, _stepGraph?.LastSegments ?? 0);

    public T Replay<T>(Func<T> step)
    {
        if (!StepGraphs) return step();
        Enter();
        // A small upload that wraps the pinned ring waits for the stream, which a recording step may not: make room first.
        if (_ring != null) RingSlot(RingLargest);
        return (_stepGraph ??= new StepGraph(Context)).Run(step, StepGraphSegments);
    }

    public void Boundary(int done, int layers) => _stepGraph?.Cut(done, layers);
}
