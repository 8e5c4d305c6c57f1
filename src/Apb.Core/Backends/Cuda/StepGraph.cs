using Apb.Backends.Cuda.Native;

namespace Apb.Backends.Cuda;

/// <summary>
/// One decode step as a CUDA graph, recorded again every step and replayed with one launch (docs/kernels/decode-step.md,
/// version 3). Each step's kernels are the same but their arguments move (the cache length, the split count, the
/// scratch addresses), so the step is recorded by stream capture and the instantiated graph is updated in place
/// (cuGraphExecUpdate); only a change of shape (other kernels, another node count) instantiates it anew.
/// </summary>
sealed unsafe class StepGraph(CudaContext context) : IDisposable
{
    // Relaxed: the step may allocate (the device pool's cuMemAlloc) while it is recorded; it must not synchronize.
    const int CaptureModeRelaxed = 2;

    nint _exec;

    /// <summary>How many times the graph was instantiated: 1 for a decode loop whose step keeps its shape.</summary>
    public int Instantiations { get; private set; }

    /// <summary>How many steps ran through the graph.</summary>
    public long Replays { get; private set; }

    public T Run<T>(Func<T> step)
    {
        Driver.Check(Driver.cuStreamBeginCapture(context.Stream, CaptureModeRelaxed), "cuStreamBeginCapture");
        T result;
        nint graph = 0;
        try
        {
            result = step();
        }
        catch
        {
            // End the capture whatever the step left behind, so that the stream takes work again; drop what was recorded.
            Driver.cuStreamEndCapture(context.Stream, &graph);
            if (graph != 0) Driver.cuGraphDestroy(graph);
            throw;
        }
        Driver.Check(Driver.cuStreamEndCapture(context.Stream, &graph), "cuStreamEndCapture (a call in the step waited for the device or was not recordable)");
        try
        {
            GraphExecUpdateResultInfo info;
            if (_exec != 0 && Driver.cuGraphExecUpdate(_exec, graph, &info) != Driver.CUDA_SUCCESS)
            {
                // Another shape: an exec whose update failed may be half updated, so it is made again.
                Driver.cuGraphExecDestroy(_exec);
                _exec = 0;
            }
            if (_exec == 0)
            {
                nint exec;
                Driver.Check(Driver.cuGraphInstantiateWithFlags(&exec, graph, 0), "cuGraphInstantiateWithFlags");
                _exec = exec;
                Instantiations++;
            }
            Driver.Check(Driver.cuGraphLaunch(_exec, context.Stream), "cuGraphLaunch");
            Replays++;
        }
        finally
        {
            Driver.cuGraphDestroy(graph);
        }
        return result;
    }

    public void Dispose()
    {
        if (_exec != 0) Driver.cuGraphExecDestroy(_exec);
        _exec = 0;
    }
}
