using Apb.Backends;
using Apb.Checkpoints;
using Apb.Comms;
using Apb.Model;

namespace Apb.Strategies.Apb;

/// <summary>
/// APB's prefill attention on one rank, per layer (docs/apb-algorithm.md, section 2.3), on the local rows [anchor; block]:
///   score the block's real tokens past those the anchor holds (retaining heads on pre-RoPE q/k/v, or query-aware on
///   post-RoPE K) -> RoPE (anchor at 0..l_a-1, block at its global positions) -> keep the top l_p per KV head after a max-pool -> all-gather the
///   selections -> rank r keeps those of ranks 0..r-1 (its passing block; under a passing budget B the best floor(B / r)
///   of each, which their senders put first: docs/apb-algorithm.md, 2.8) -> attention with keys [passing; anchor; block]
///   (<see cref="AnchoredAttention"/>). The passing block is dropped after the call; only the block's real rows are cached.
/// The last rank's selection would be read by nobody, so it sends none; a block with no more selectable tokens than l_p is
/// passed whole without scoring. The all-gather is started before the work that does not need it (the anchor rows'
/// attention, placing the local keys/values, caching the block) and completed before the block rows' attention, which
/// reads it (rank 0, which reads none of it, completes it after that attention).
/// </summary>
public sealed class ApbAttention : SequenceParallelAttention
{
    readonly RetainingHeadScorer? _retaining;
    readonly QueryAwareScorer? _queryAware;
    readonly NoveltyTerm? _headsNovelty;
    readonly float _noveltyWeight;

    /// <param name="retaining">the trained scorer, or null for the query-aware one</param>
    /// <param name="noveltyWeight">the novelty term's weight in either scorer (0: the query term or the heads alone)</param>
    public ApbAttention(IBackend backend, ModelConfig config, RopeTable rope, SequencePlan plan, ICommunicator comm,
        RetainingHeadScorer? retaining, float noveltyWeight = NoveltyTerm.Weight)
        : base(backend, config, rope, plan, comm)
    {
        _retaining = retaining;
        _noveltyWeight = noveltyWeight;
        // SequencePlanner refused plans the query-aware scorer cannot score (no query in the anchor).
        _queryAware = retaining is null ? new QueryAwareScorer(backend, config, noveltyWeight) : null;
        _headsNovelty = retaining is not null && noveltyWeight != 0 ? new NoveltyTerm(backend, config) : null;
    }

    PassingRows? _picked;

    /// <summary>Layers below this one pass nothing: their block rows attend the anchor and their own block (<see cref="StrategyOptions.PassingFromLayer"/>).</summary>
    public int PassingFromLayer { get; init; }

    protected override void DisposeBuffers()
    {
        _picked?.Dispose();
        _picked = null;
        _queryAware?.Dispose();
        _headsNovelty?.Dispose();
    }

    // The selection's row indices, reused across layers (the count is the same in every layer).
    PassingRows Picked(int count)
    {
        if (_picked is { } p && p.Count == count) return p;
        _picked?.Dispose();
        return _picked = B.Passing.AllocateRows(count, KvHeads);
    }

    public override void Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor output)
    {
        int a = Plan.AnchorRows(Rank), lb = Plan.BlockLength, t = a + lb;
        if (q.Rows != t) throw new ArgumentException($"apb: rank {Rank} got {q.Rows} rows, the plan says {t}");
        // The rows that may be passed: the block's real rows past those the anchor holds (rank 0's first l_a - q).
        int skip = Plan.ChunkSkippedRows(Rank), selectable = Plan.ChunkSelectableRows(Rank), sent = Plan.SentRows(Rank);
        // The same on every rank (the layer too): all join the all-gather or none.
        bool passes = Plan.PassingLength > 0 && Ranks > 1 && layer >= PassingFromLayer;
        bool scores = passes && Plan.ChunkScores(Rank);
        Tensor qb = q.RowSlice(a + skip, lb - skip), kb = k.RowSlice(a + skip, lb - skip), vb = v.RowSlice(a + skip, lb - skip);

        Tensor? s = null; // [selectable, n_kv] scores, left on the backend: the selection pools and picks where they are
        if (scores && _retaining != null)
            using (Measure("scoring")) s = _retaining.ScoreOnDevice(layer, qb, kb, vb, selectable);
        Rotate(q, k, Plan.LocalPositions(Rank));
        if (s != null && _headsNovelty != null)
            using (Measure("scoring"))
            {
                // The heads read pre-RoPE q/k/v; the novelty term reads the rotated keys, as in the query-aware scorer.
                s = _headsNovelty.Widened(s);
                _headsNovelty.MixInto(s, kb, _noveltyWeight);
            }
        if (passes && _queryAware != null) s = QueryAwareScores(q, kb, selectable, scores);

        int p = passes ? Plan.PassingRows(Rank) : 0;
        Tensor? keys = null, values = null, gathered = null;
        IPendingTransfer? gather = null;
        if (passes)
        {
            var send = Buffer("send", 2 * sent, C.KvDim);
            if (sent > 0)
                using (Measure("selection"))
                {
                    if (s is null)
                    {
                        // Nothing to drop: the first `sent` selectable rows (all of them) for every head.
                        B.Copy(kb, 0, 0, send, 0, 0, sent, C.KvDim);
                        B.Copy(vb, 0, 0, send, sent, 0, sent, C.KvDim);
                    }
                    else
                    {
                        var picked = Picked(sent);
                        B.Passing.SelectPassing(s, KvHeads, picked, Plan.ChunkSendsBestFirst(Rank));
                        B.Passing.GatherHeadRows(kb, KvHeads, picked, send.RowSlice(0, sent));
                        B.Passing.GatherHeadRows(vb, KvHeads, picked, send.RowSlice(sent, sent));
                    }
                }
            var counts = new int[Ranks];
            int total = 0;
            for (int j = 0; j < Ranks; j++) total += counts[j] = 2 * Plan.SentRows(j);
            gathered = Buffer("gathered", total, C.KvDim);
            // In flight (with Overlap) while the work below that does not need it runs: send is not written and gathered
            // not read until it completes.
            gather = Started(Comm.StartAllGather(send, gathered, counts));
        }
        // [passing; anchor; block] only where there is a passing block (p is 0 on rank 0 and whenever nothing passes):
        // without one the block rows attend to k and v as they are.
        if (p > 0)
        {
            keys = Buffer("keys", p + t, C.KvDim);
            values = Buffer("values", p + t, C.KvDim);
        }

        // Independent of the passing block: the anchor rows' attention, the local rows' place in keys/values, the cache.
        double pairs;
        using (Measure("attention"))
        {
            pairs = AnchoredAttention.AnchorRows(B, Heads, KvHeads, q, k, v, a, output);
            AnchoredAttention.PlaceLocal(B, k, v, p, keys, values);
        }
        CacheOwnBlock(layer, k, v, a);

        // Rank 0 reads nothing of the gather (no passing block): it completes it after its attention instead.
        if (gather != null && p > 0)
        {
            gather.Complete();
            // Rank j's message is [K_j; V_j]; rank r's passing block is K_0..K_{r-1} (and V likewise), in rank order, each
            // the first rows rank r reads of it (all of them without a passing budget; the best ones, sent first, with).
            using (Measure("other"))
            {
                int at = 0, row = 0;
                for (int j = 0; j < Rank; j++)
                {
                    int n = Plan.SentRows(j), read = Plan.ChunkReadRows(j, Rank);
                    B.Copy(gathered!, at, 0, keys!, row, 0, read, C.KvDim);
                    B.Copy(gathered!, at + n, 0, values!, row, 0, read, C.KvDim);
                    at += 2 * n; row += read;
                }
            }
        }

        using (Measure("attention"))
            pairs += AnchoredAttention.BlockRows(B, Heads, KvHeads, q, k, v, a, p, keys, values, output);
        CountAttention(pairs);
        gather?.Complete();
    }

    /// <summary>
    /// Query-aware scores of this rank's selectable block rows, or null when it passes them whole. Ranks >= 1 hold the
    /// query in their anchors and compute qbar themselves; rank 0 has no anchor, so rank 1 (the lowest rank holding the query:
    /// every anchor is the same, so its qbar is exactly what any anchored rank computes) sends it qbar each layer.
    /// </summary>
    Tensor? QueryAwareScores(Tensor q, Tensor kb, int rows, bool scores)
    {
        bool rank0Scores = Plan.ChunkScores(0);
        // fp32: the kernel's mean is fp32 and the scores are dots against it; bf16 would round every qbar entry.
        var qbar = Buffer("qbar", 1, C.KvDim, fp32: true);
        if (Rank >= 1 && (scores || (Rank == 1 && rank0Scores)))
            using (Measure("scoring")) _queryAware!.QueryMean(q.RowSlice(Plan.AnchorInsertAt, Plan.QueryLength), qbar);
        if (rank0Scores)
        {
            if (Rank == 1) Comm.Send(qbar, 0);
            else if (Rank == 0) Comm.Recv(qbar, 1);
        }
        if (!scores) return null;
        using var _ = Measure("scoring");
        return _queryAware!.ScoreOnDevice(kb, qbar, rows);
    }
}
