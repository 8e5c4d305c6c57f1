using Apb.Attention;
using Apb.Backends;
using Apb.Checkpoints;
using Apb.Comms;
using Apb.Diagnostics;
using Apb.Model;

namespace Apb.Strategies;

/// <summary>
/// What every prefill strategy of one rank shares: the plan, the communicator, RoPE with the plan's positions, and the
/// KV caches that keep the rank's own block only (real rows, post-RoPE) for the star phase that follows.
/// </summary>
public abstract class SequenceParallelAttention : IAttention, IDisposable
{
    protected readonly IBackend B;
    protected readonly ModelConfig C;
    protected readonly RopeTable RopeTable;
    protected readonly SequencePlan Plan;
    protected readonly ICommunicator Comm;

    protected int Rank => Comm.Rank;
    protected int Ranks => Comm.WorldSize;
    protected int Heads => C.NumAttentionHeads;
    protected int KvHeads => C.NumKeyValueHeads;

    /// <summary>
    /// Overlap transfers with the work that does not need them (<see cref="StrategyOptions.Overlap"/>): a transfer is
    /// started, independent work is queued, then it is completed. Off: every transfer completes as soon as it starts,
    /// the serialized schedule, to measure what overlap buys. The results are the same either way.
    /// </summary>
    public bool Overlap { get; init; } = true;

    /// <summary>How <see cref="Caches"/> store their rows (--kv-cache-dtype); set before the first layer runs.</summary>
    public KvCacheDType KvDType { get; init; }

    /// <summary>
    /// Per layer: the post-RoPE K/V of this rank's real block rows, in block order (made on first use, in
    /// <see cref="KvDType"/>; a cache takes memory only from its first row).
    /// </summary>
    public KvCache[] Caches => _caches ??= Enumerable.Range(0, C.NumHiddenLayers)
        .Select(_ => new KvCache(B, C.KvDim, Plan.RealRows(Comm.Rank), KvDType)).ToArray();
    KvCache[]? _caches;
    public Profile? Profile { get; set; }

    protected SequenceParallelAttention(IBackend backend, ModelConfig config, RopeTable rope, SequencePlan plan, ICommunicator comm)
    {
        if (plan.Ranks != comm.WorldSize)
            throw new ArgumentException($"plan for {plan.Ranks} ranks used with a group of {comm.WorldSize}");
        B = backend; C = config; RopeTable = rope; Plan = plan; Comm = comm;
    }

    /// <summary>Rows reserved past the query for decoded tokens on the last rank (128 KiB of cache a row at the 8B shape).</summary>
    public const int DecodeReserve = 256;

    /// <summary>
    /// The star phase appends the query and then every decoded token to the last rank's caches: reserve room for
    /// <paramref name="queryRows"/> + <see cref="DecodeReserve"/> rows before prefill, so the block is never copied into a
    /// larger buffer with both alive (call before the first layer runs; other ranks ignore it).
    /// </summary>
    public void ReserveStarPhase(int queryRows)
    {
        if (Rank != Ranks - 1) return;
        foreach (var c in Caches) c.Reserve(Plan.RealRows(Rank) + queryRows + DecodeReserve);
    }

    protected Profile.Scope? Measure(string phase) => Profile?.Measure(phase);

    public abstract void Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor output);

    protected void Rotate(Tensor q, Tensor k, int[] positions)
    {
        using var _ = Measure("other");
        B.Rope(q, Heads, positions, RopeTable);
        B.Rope(k, KvHeads, positions, RopeTable);
    }

    /// <summary>Appends the block's real rows (pad rows are a suffix of the block and stay out).</summary>
    protected void CacheOwnBlock(int layer, Tensor k, Tensor v, int blockStart)
    {
        using var _ = Measure("other");
        Caches[layer].Append(k, v, blockStart, Plan.RealRows(Rank));
    }

    /// <summary>A transfer just started: left in flight, or completed at once when <see cref="Overlap"/> is off.</summary>
    protected IPendingTransfer Started(IPendingTransfer transfer)
    {
        if (!Overlap) transfer.Complete();
        return transfer;
    }

    protected void CountAttention(double visiblePairs) => Profile?.AddAttention(visiblePairs, Heads, C.HeadDim);

    // Buffers reused across layers: shapes repeat every layer, so one allocation per distinct (name, shape) suffices.
    readonly Dictionary<string, Tensor> _buffers = new(StringComparer.Ordinal);

    protected Tensor Buffer(string name, int rows, int cols, bool fp32 = false)
    {
        if (_buffers.TryGetValue(name, out var t))
        {
            if (t.Rows == rows && t.Cols == cols) return t;
            t.Dispose();
            _buffers.Remove(name);
        }
        return _buffers[name] = fp32 ? B.AllocateF32(rows, cols) : B.Allocate(rows, cols);
    }

    /// <summary>
    /// Gives back the per-layer buffers (and a subclass's own, <see cref="DisposeBuffers"/>), not <see cref="Caches"/>:
    /// the caches outlive the prefill (the star phase reads them) and belong to whoever holds the sequence.
    /// </summary>
    public void Dispose()
    {
        foreach (var t in _buffers.Values) t.Dispose();
        _buffers.Clear();
        DisposeBuffers();
    }

    protected virtual void DisposeBuffers() { }
}
