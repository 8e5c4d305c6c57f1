namespace Apb.Model;

/// <summary>
/// Where a weight load stands: bytes of the checkpoint's tensors handed to the backend so far, of how many, after how
/// long. <see cref="LlamaWeights.Load"/> reports one after each tensor; a CPU backend reads weights in place (nothing is
/// copied at load), a GPU backend copies every byte from the memory-mapped files.
/// </summary>
public readonly record struct LoadProgress(long Bytes, long TotalBytes, int Tensors, int TotalTensors, TimeSpan Elapsed)
{
    public bool Done => Tensors == TotalTensors;
    public double BytesPerSecond => Elapsed > TimeSpan.Zero ? Bytes / Elapsed.TotalSeconds : 0;
}

/// <summary>
/// A load's progress as lines of text (the CLI's stderr): one every <paramref name="interval"/> once the load has run
/// that long, and a summary at the end of a load that took that long. A faster load prints nothing: the CPU backend's
/// (it reads weights in place) and a small model's. Safe to share between ranks loading at once.
/// </summary>
public sealed class LoadProgressLog(TextWriter writer, TimeSpan interval)
{
    readonly object _gate = new();
    TimeSpan _last;

    public void Report(LoadProgress p)
    {
        if (p.Elapsed < interval) return;
        lock (_gate)
        {
            if (!p.Done && p.Elapsed - _last < interval) return;
            _last = p.Elapsed;
            double rate = p.BytesPerSecond / (1L << 30);
            writer.WriteLine(p.Done
                ? $"loaded weights: {GiB(p.Bytes)} GiB in {p.Elapsed.TotalSeconds:F1} s ({rate:F2} GiB/s)"
                : $"loading weights: {GiB(p.Bytes)} of {GiB(p.TotalBytes)} GiB ({100.0 * p.Bytes / Math.Max(p.TotalBytes, 1):F0}%), " +
                  $"{p.Tensors} of {p.TotalTensors} tensors, {rate:F2} GiB/s");
        }
    }

    static string GiB(long bytes) => (bytes / (double)(1L << 30)).ToString("F1", System.Globalization.CultureInfo.InvariantCulture);
}
