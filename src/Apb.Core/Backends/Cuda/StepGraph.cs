using Apb.Backends.Cuda.Native;

namespace Apb.Backends.Cuda;

/// <summary>
/// One decode step as CUDA graphs, recorded again every step and replayed (docs/kernels/decode-step.md, versions 3 and
/// 5). Each step's kernels are the same but their arguments move (the cache length, the split count, the scratch
/// addresses), so the step is recorded by stream capture and each instantiated graph is updated in place
/// (cuGraphExecUpdate); only a change of shape (other kernels, another node count) instantiates one anew.
/// <para>
/// The step is cut into graphs at layer boundaries (<see cref="Cut"/>): a segment is launched as
/// soon as it is recorded, and the next one is recorded while the device runs it. With one segment the whole recording
/// comes before the device starts (version 3: 0.6 ms per token slower than launching the kernels one by one); with 8 or
/// 16 only the first segment's recording does, and the step is level with launching or up to 0.22 ms slower.
/// </para>
/// </summary>
sealed unsafe class StepGraph(CudaContext context) : IDisposable
{
    // Relaxed: the step may allocate (the device pool's cuMemAlloc) while it is recorded; it must not synchronize.
    const int CaptureModeRelaxed = 2;

    readonly List<nint> _execs = [];
    bool _recording;
    int _segment;

    /// <summary>Graphs the step being recorded is cut into at most (APB_DECODE_GRAPH_SEGMENTS; 1 records the step whole).</summary>
    int _segments = 1;

    /// <summary>How many times a segment's graph was instantiated: one per segment for a decode loop whose step keeps its shape.</summary>
    public int Instantiations { get; private set; }

    /// <summary>How many steps ran through the graphs.</summary>
    public long Replays { get; private set; }

    /// <summary>Segments the last step was cut into.</summary>
    public int LastSegments { get; private set; }

    /// <summary>Records <paramref name="step"/> in up to <paramref name="segments"/> graphs and launches each as it ends.</summary>
    public T Run<T>(Func<T> step, int segments)
    {
        _segments = Math.Max(1, segments);
        _segment = 0;
        Begin();
        T result;
        try
        {
            result = step();
        }
        catch
        {
            // End the capture whatever the step left behind, so that the stream takes work again; drop what was recorded.
            Abandon();
            throw;
        }
        LaunchSegment();
        LastSegments = _segment;
        Replays++;
        return result;
    }

    /// <summary>
    /// After <paramref name="done"/> of <paramref name="layers"/> layers: ends the segment here when this boundary is
    /// one of the segments - 1 evenly spaced cuts, launches it and starts recording the next.
    /// </summary>
    public void Cut(int done, int layers)
    {
        if (!_recording || !CutsAfter(done, layers, _segments)) return;
        LaunchSegment();
        Begin();
    }

    /// <summary>
    /// Whether a step of <paramref name="layers"/> layers cut into <paramref name="segments"/> ends a segment after
    /// <paramref name="done"/> layers: after ceil(k * layers / segments) layers, k = 1 .. segments - 1, so segments
    /// differ by at most one layer, and a step has min(segments, layers) of them.
    /// </summary>
    internal static bool CutsAfter(int done, int layers, int segments)
    {
        if (segments <= 1 || done <= 0 || done >= layers) return false;
        return (long)done * segments / layers != (long)(done - 1) * segments / layers;
    }

    void Begin()
    {
        Driver.Check(Driver.cuStreamBeginCapture(context.Stream, CaptureModeRelaxed), "cuStreamBeginCapture");
        _recording = true;
    }

    void Abandon()
    {
        if (!_recording) return;
        _recording = false;
        nint graph = 0;
        Driver.cuStreamEndCapture(context.Stream, &graph);
        if (graph != 0) Driver.cuGraphDestroy(graph);
    }

    /// <summary>Ends the capture, brings the segment's graph up to date (update, or instantiate on a new shape) and launches it.</summary>
    void LaunchSegment()
    {
        nint graph = 0;
        _recording = false;
        Driver.Check(Driver.cuStreamEndCapture(context.Stream, &graph), "cuStreamEndCapture (a call in the step waited for the device or was not recordable)");
        try
        {
            while (_execs.Count <= _segment) _execs.Add(0);
            nint exec = _execs[_segment];
            GraphExecUpdateResultInfo info;
            if (exec != 0 && Driver.cuGraphExecUpdate(exec, graph, &info) != Driver.CUDA_SUCCESS)
            {
                // Another shape: an exec whose update failed may be half updated, so it is made again.
                Driver.cuGraphExecDestroy(exec);
                exec = _execs[_segment] = 0;
            }
            if (exec == 0)
            {
                Driver.Check(Driver.cuGraphInstantiateWithFlags(&exec, graph, 0), "cuGraphInstantiateWithFlags");
                _execs[_segment] = exec;
                Instantiations++;
            }
            Driver.Check(Driver.cuGraphLaunch(exec, context.Stream), "cuGraphLaunch");
            _segment++;
        }
        finally
        {
            Driver.cuGraphDestroy(graph);
        }
    }

    public void Dispose()
    {
        Abandon();
        foreach (var exec in _execs)
            if (exec != 0) Driver.cuGraphExecDestroy(exec);
        _execs.Clear();
    }
}
