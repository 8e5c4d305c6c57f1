using Apb.Bench;
using Apb.Engine;
using Apb.Runtime;

namespace Apb.Cli.Commands;

/// <summary>
/// A session whose prefill says how far it is on stderr. One rank with full attention prefills in chunks of
/// <see cref="ChunkTokens"/> (the KV cache grows chunk by chunk, as the server's chunked prefill does: the same
/// attention) and reports each with an ETA; a rank group's prefill is one call across the ranks, so it reports the
/// time spent until it returns.
/// </summary>
sealed class PrefillProgress(IInferenceSession inner, Progress progress) : IInferenceSession
{
    /// <summary>Tokens per prefill chunk: long enough that chunking costs nothing measurable, short enough to report every few seconds on a CPU.</summary>
    public const int ChunkTokens = 2048;

    public IInferenceSession Inner => inner;
    public int Length => inner.Length;
    public string? Settings => inner.Settings;
    public float[] Decode(int token) => inner.Decode(token);

    public float[] Prefill(IReadOnlyList<int> context, IReadOnlyList<int> query)
    {
        int total = context.Count + query.Count;
        if (inner is LocalSession local && total > ChunkTokens)
        {
            var ids = context.Concat(query).ToArray();
            float[] logits = [];
            for (int at = 0; at < total; at += ChunkTokens)
            {
                int end = Math.Min(total, at + ChunkTokens);
                logits = local.Prefill(ids[at..end], []);
                progress.Update($"prefill: {Progress.Fraction(end, total, progress.Elapsed)} tokens, {Progress.Duration(progress.Elapsed.TotalSeconds)}", force: end == total || at == 0);
            }
            progress.Clear();
            return logits;
        }
        if (inner is LocalSession) return inner.Prefill(context, query);
        // One call across the ranks: on a terminal the elapsed time ticks while it runs.
        var start = progress.Elapsed;
        string what = $"prefill: {total} tokens over the ranks";
        progress.Update(what, force: true);
        var ticker = new Timer(_ => progress.Update($"{what}, {Progress.Duration((progress.Elapsed - start).TotalSeconds)}"), null, 1000, 1000);
        try { return inner.Prefill(context, query); }
        finally
        {
            using (var stopped = new ManualResetEvent(false))
                if (ticker.Dispose(stopped)) stopped.WaitOne(); // a tick under way finishes before the line is cleared
            progress.Clear();
        }
    }

    public void Dispose() => inner.Dispose();
}
