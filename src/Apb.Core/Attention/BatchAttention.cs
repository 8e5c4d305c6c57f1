using Apb.Backends;
using Apb.Model;

namespace Apb.Attention;

/// <summary>
/// Attention for a step that carries several sequences' rows at once (a batched decode step): the model runs its
/// projections and MLP over all rows together, which reads the weights once for the whole batch, and each sequence's
/// rows attend through that sequence's own attention (its cache, positions and, for a distributed sequence, its ranks).
/// Parts are visited in order, so every rank of a group makes its sequences' collectives in the same order.
/// </summary>
public sealed class BatchAttention(IReadOnlyList<(IAttention Attention, int Rows)> parts) : IAttention
{
    public int Rows { get; } = parts.Sum(p => p.Rows);

    // One decode row per sequence of full attention: the whole batch in one rotation and one attention call.
    readonly FullAttention[]? _decoding = parts.All(p => p.Rows == 1 && p.Attention is FullAttention)
        ? parts.Select(p => (FullAttention)p.Attention).ToArray() : null;

    public void Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor output)
    {
        if (q.Rows != Rows) throw new ArgumentException($"batch attention: {q.Rows} rows for parts of {Rows} in all");
        if (_decoding is not null && FullAttention.TryDecodeBatch(_decoding, layer, q, k, v, output)) return;
        // Distributed sequences (the star phase) attend together: one all-gather for all of them per layer, not one per
        // sequence. Every rank holds the same distributed sequences in the same order, so the collectives match.
        var star = new List<(StarPhaseAttention, int, int)>();
        int at = 0;
        foreach (var (attention, rows) in parts)
        {
            if (attention is StarPhaseAttention s) star.Add((s, at, rows));
            else attention.Attend(layer, q.RowSlice(at, rows), k.RowSlice(at, rows), v.RowSlice(at, rows), output.RowSlice(at, rows));
            at += rows;
        }
        if (star.Count > 0) StarPhaseAttention.AttendTogether(star, layer, q, k, v, output);
    }
}
