namespace Apb.Backends;

/// <summary>
/// A backend that can record one decode step's device work and replay it as a single launch (a CUDA graph): the step
/// runs as written, but its kernels and copies are recorded instead of queued, then the recording runs. A step run
/// this way must not wait for the device or read device memory on the host; it may allocate.
/// </summary>
public interface IStepGraphs
{
    /// <summary>Whether <see cref="Replay{T}"/> records (APB_DECODE_GRAPH=1 on CUDA); when false it runs the step directly.</summary>
    bool StepGraphs { get; }

    /// <summary>Runs <paramref name="step"/>, recorded and replayed when <see cref="StepGraphs"/> is on.</summary>
    T Replay<T>(Func<T> step);

    /// <summary>
    /// Called inside a replayed step after each of the model's <paramref name="layers"/> layers but the last
    /// (<paramref name="done"/> layers done; LocalSession passes it to the forward pass): a point where a recording step
    /// may end a segment, launch it, and record the next while the device runs it. Nothing happens outside a recording
    /// step.
    /// </summary>
    void Boundary(int done, int layers);
}
