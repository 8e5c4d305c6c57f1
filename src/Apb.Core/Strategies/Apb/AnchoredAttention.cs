using Apb.Attention;
using Apb.Backends;

namespace Apb.Strategies.Apb;

/// <summary>
/// The attention of APB (and Star, with no passing block) on one rank, as two standard causal calls. Keys are laid out
/// [passing (P); anchor (A); block], queries [anchor; block]:
///   | query rows   | passing keys | anchor keys   | block keys   |
///   | anchor row i | not visible  | causal (&lt;= i) | not visible  |
///   | block row t  | all visible  | all visible   | causal (&lt;= t) |
/// Call 1: anchor rows against anchor keys, causal. Call 2: block rows against all keys, causal with bottom-right
/// alignment, which shifts the diagonal by P + A so that every passing and anchor key is visible to every block row.
/// </summary>
static class AnchoredAttention
{
    /// <param name="q">[A + L, q_dim] local queries, post-RoPE</param>
    /// <param name="k">[A + L, kv_dim] local keys, post-RoPE (v likewise)</param>
    /// <param name="keys">[P + A + L, kv_dim] with the passing keys already in rows [0, P); ignored when P = 0 (values likewise)</param>
    /// <returns>visible (query, key) pairs, for the FLOP count</returns>
    public static double Run(IBackend b, int heads, int kvHeads, Tensor q, Tensor k, Tensor v, int anchorRows,
        int passingRows, Tensor? keys, Tensor? values, Tensor output)
    {
        double pairs = AnchorRows(b, heads, kvHeads, q, k, v, anchorRows, output);
        PlaceLocal(b, k, v, passingRows, keys, values);
        return pairs + BlockRows(b, heads, kvHeads, q, k, v, anchorRows, passingRows, keys, values, output);
    }

    /// <summary>Call 1: the anchor rows against the anchor keys (the passing block is not needed). Returns the visible pairs.</summary>
    public static double AnchorRows(IBackend b, int heads, int kvHeads, Tensor q, Tensor k, Tensor v, int anchorRows, Tensor output)
    {
        int a = anchorRows;
        if (a > 0)
            b.Attention(q.RowSlice(0, a), k.RowSlice(0, a), v.RowSlice(0, a), heads, kvHeads, AttentionMask.Causal,
                output.RowSlice(0, a), null);
        return FullAttention.CausalPairs(a, a);
    }

    /// <summary>Copies the local keys and values to rows [P, P + A + L) of keys/values (nothing when P = 0); the passing rows are left alone.</summary>
    public static void PlaceLocal(IBackend b, Tensor k, Tensor v, int passingRows, Tensor? keys, Tensor? values)
    {
        int p = passingRows, t = k.Rows;
        if (p == 0) return;
        if (keys is null || values is null || keys.Rows != p + t || values.Rows != p + t)
            throw new ArgumentException($"anchored attention: keys {keys} / values {values} must have {p} passing + {t} local rows");
        b.Copy(k, 0, 0, keys, p, 0, t, k.Cols);
        b.Copy(v, 0, 0, values, p, 0, t, v.Cols);
    }

    /// <summary>Call 2: the block rows against [passing; anchor; block] (keys/values filled: passing rows and <see cref="PlaceLocal"/>). Returns the visible pairs.</summary>
    public static double BlockRows(IBackend b, int heads, int kvHeads, Tensor q, Tensor k, Tensor v, int anchorRows,
        int passingRows, Tensor? keys, Tensor? values, Tensor output)
    {
        int a = anchorRows, t = q.Rows, l = t - a, p = passingRows;
        Tensor allK = k, allV = v;
        if (p > 0)
        {
            if (keys is null || values is null || keys.Rows != p + t || values.Rows != p + t)
                throw new ArgumentException($"anchored attention: keys {keys} / values {values} must have {p} passing + {t} local rows");
            allK = keys; allV = values;
        }
        b.Attention(q.RowSlice(a, l), allK, allV, heads, kvHeads, AttentionMask.Causal, output.RowSlice(a, l), null);
        return FullAttention.CausalPairs(l, p + t);
    }
}
