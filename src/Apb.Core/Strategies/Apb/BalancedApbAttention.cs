using Apb.Attention;
using Apb.Backends;
using Apb.Checkpoints;
using Apb.Comms;
using Apb.Model;

namespace Apb.Strategies.Apb;

/// <summary>
/// Balanced APB on one rank, per layer (docs/apb-algorithm.md, section 2.6): APB's definition applied to each of 2H
/// chunks, on the zigzag layout. Rank r's local rows are [anchor; chunk r; chunk 2H-1-r]. Each chunk with a chunk
/// after it scores its real rows (past those the anchor holds), keeps its top ceil(l_p / 2) per KV head and sends
/// them in one all-gather; then:
///   | query rows        | passing keys                  | anchor keys   | own chunk keys |
///   | anchor row i      | hidden                        | j &lt;= i        | hidden         |
///   | chunk 0 row t     | none (nothing precedes it)    | hidden        | j &lt;= t        |
///   | chunk c > 0 row t | selections of chunks 0..c-1   | visible       | j &lt;= t        |
/// Each chunk is one causal call against [passing; anchor; chunk] (bottom-right aligned), built in a buffer of its own:
/// the early chunk's passing block is a prefix of the late chunk's, but the anchor must sit between it and the chunk.
/// Chunk 0 (rank 0's early chunk) reads neither the anchor nor a passing block, as rank 0 of contiguous APB. So balanced
/// APB on H ranks computes what contiguous APB computes on 2H ranks with l_p' = ceil(l_p / 2), at every row, while
/// every rank does about the same work. Only the block's real rows are cached (chunk r's, then chunk 2H-1-r's), which
/// the exact phase reads as it reads any rank's cache.
/// </summary>
public sealed class BalancedApbAttention : SequenceParallelAttention
{
    readonly RetainingHeadScorer? _retaining;
    readonly QueryAwareScorer? _queryAware;
    // With the heads, one novelty term per chunk: each keeps its chunk's widened scores until the rotated keys exist.
    readonly NoveltyTerm?[] _headsNovelty = new NoveltyTerm?[2];
    readonly float _noveltyWeight;
    readonly PassingRows?[] _picked = new PassingRows?[2];

    /// <param name="retaining">the trained scorer, or null for the query-aware one</param>
    /// <param name="noveltyWeight">the novelty term's weight in either scorer (0: the query term or the heads alone), as
    /// contiguous APB (<see cref="ApbAttention"/>)</param>
    public BalancedApbAttention(IBackend backend, ModelConfig config, RopeTable rope, SequencePlan plan, ICommunicator comm,
        RetainingHeadScorer? retaining, float noveltyWeight = NoveltyTerm.Weight)
        : base(backend, config, rope, plan, comm)
    {
        if (plan.Layout != SequenceLayout.Zigzag)
            throw new ArgumentException($"balanced APB needs a zigzag plan, got {plan}");
        _retaining = retaining;
        _noveltyWeight = noveltyWeight;
        // SequencePlanner refused plans the query-aware scorer cannot score (no query in the anchor).
        _queryAware = retaining is null ? new QueryAwareScorer(backend, config, noveltyWeight) : null;
        if (retaining is not null && noveltyWeight != 0)
            for (int i = 0; i < 2; i++) _headsNovelty[i] = new NoveltyTerm(backend, config);
    }

    protected override void DisposeBuffers()
    {
        for (int i = 0; i < _picked.Length; i++) { _picked[i]?.Dispose(); _picked[i] = null; }
        foreach (var n in _headsNovelty) n?.Dispose();
        _queryAware?.Dispose();
    }

    // The selection's row indices of the rank's early (0) and late (1) chunk, reused across layers.
    PassingRows Picked(int which, int count)
    {
        if (_picked[which] is { } p && p.Count == count) return p;
        _picked[which]?.Dispose();
        return (_picked[which] = B.Passing.AllocateRows(count, KvHeads))!;
    }

    /// <summary>Layers below this one pass nothing (<see cref="StrategyOptions.PassingFromLayer"/>).</summary>
    public int PassingFromLayer { get; init; }

    public override void Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor output)
    {
        int a = Plan.AnchorRows(Rank), lc = Plan.ChunkLength, t = a + 2 * lc;
        if (q.Rows != t) throw new ArgumentException($"apb-balanced: rank {Rank} got {q.Rows} rows, the plan says {t}");
        int[] chunks = Plan.ChunksOf(Rank);
        // The same on every rank (the layer too): all join the all-gather or none.
        bool passes = Plan.ChunkPassingLength > 0 && Ranks > 1 && layer >= PassingFromLayer;
        // Where chunk i's selectable rows start in the local rows: past the anchor, the early chunk and what the anchor holds.
        int From(int i) => a + i * lc + Plan.ChunkSkippedRows(chunks[i]);

        // Select before RoPE where the retaining heads score (they read pre-RoPE q/k/v), after it for the query-aware
        // scorer (post-RoPE keys); either way each chunk's selection is made before the next chunk's scores overwrite the
        // scorer's buffer, and the rows are gathered after RoPE.
        // Top-k is timed as "selection" and the rest as "scoring", as contiguous APB times them.
        void Select(int i, Tensor scores)
        {
            using (Measure("selection"))
                B.Passing.SelectPassing(scores, KvHeads, Picked(i, Plan.ChunkSentRows(chunks[i])), Plan.ChunkSendsBestFirst(chunks[i]));
        }
        var headScores = new Tensor?[2];
        if (passes && _retaining != null)
            for (int i = 0; i < 2; i++)
                if (Plan.ChunkScores(chunks[i]))
                {
                    int at = From(i), rows = Plan.ChunkSelectableRows(chunks[i]);
                    Tensor s;
                    using (Measure("scoring"))
                    {
                        s = _retaining.ScoreOnDevice(layer, q.RowSlice(at, rows), k.RowSlice(at, rows), v.RowSlice(at, rows), rows);
                        // The scorer's buffer is the next chunk's: the mix keeps its own copy until the keys are rotated.
                        if (_headsNovelty[i] is { } novelty) headScores[i] = novelty.Widened(s);
                    }
                    if (headScores[i] is null) Select(i, s);
                }
        Rotate(q, k, Plan.LocalPositions(Rank));
        for (int i = 0; i < 2; i++)
            if (headScores[i] is { } s)
            {
                // The heads read pre-RoPE q/k/v; the novelty term reads the rotated keys, as contiguous APB does.
                using (Measure("scoring")) _headsNovelty[i]!.MixInto(s, k.RowSlice(From(i), s.Rows), _noveltyWeight);
                Select(i, s);
            }
        if (passes && _queryAware != null && (Plan.ChunkScores(chunks[0]) || Plan.ChunkScores(chunks[1])))
        {
            // Every rank's anchor holds the query (rank 0's too, unlike contiguous APB): qbar is computed locally.
            var qbar = Buffer("qbar", 1, C.KvDim, fp32: true);
            using (Measure("scoring")) _queryAware.QueryMean(q.RowSlice(Plan.AnchorInsertAt, Plan.QueryLength), qbar);
            for (int i = 0; i < 2; i++)
                if (Plan.ChunkScores(chunks[i]))
                {
                    int rows = Plan.ChunkSelectableRows(chunks[i]);
                    Tensor s;
                    using (Measure("scoring")) s = _queryAware.ScoreOnDevice(k.RowSlice(From(i), rows), qbar, rows);
                    Select(i, s); // before the next chunk's scores overwrite the scorer's buffer
                }
        }

        Tensor? gathered = null;
        IPendingTransfer? gather = null;
        if (passes)
        {
            // Rank j's message: [K of chunk j; V of chunk j; K of chunk 2H-1-j; V of chunk 2H-1-j], each chunk's sent rows.
            var send = Buffer("send", 2 * Plan.SentRows(Rank), C.KvDim);
            using (Measure("selection"))
            {
                int at = 0;
                for (int i = 0; i < 2; i++)
                {
                    int c = chunks[i], sent = Plan.ChunkSentRows(c);
                    if (sent == 0) continue;
                    int rows = Plan.ChunkSelectableRows(c);
                    Tensor kc = k.RowSlice(From(i), rows), vc = v.RowSlice(From(i), rows);
                    if (!Plan.ChunkScores(c))
                    {
                        // Nothing to drop: the chunk's first `sent` selectable rows (all of them) for every head.
                        B.Copy(kc, 0, 0, send, at, 0, sent, C.KvDim);
                        B.Copy(vc, 0, 0, send, at + sent, 0, sent, C.KvDim);
                    }
                    else
                    {
                        B.Passing.GatherHeadRows(kc, KvHeads, _picked[i]!, send.RowSlice(at, sent));
                        B.Passing.GatherHeadRows(vc, KvHeads, _picked[i]!, send.RowSlice(at + sent, sent));
                    }
                    at += 2 * sent;
                }
            }
            var counts = new int[Ranks];
            int total = 0;
            for (int j = 0; j < Ranks; j++) total += counts[j] = 2 * Plan.SentRows(j);
            gathered = Buffer("gathered", total, C.KvDim);
            // In flight (with Overlap) during the work below that does not read it.
            gather = Started(Comm.StartAllGather(send, gathered, counts));
        }

        double pairs;
        Tensor?[] keys = new Tensor?[2], values = new Tensor?[2];
        using (Measure("attention"))
        {
            pairs = AnchoredAttention.AnchorRows(B, Heads, KvHeads, q, k, v, a, output);
            for (int i = 0; i < 2; i++)
            {
                int c = chunks[i];
                if (c == 0)
                {
                    // The context start: its own rows causally, nothing else (no anchor, no passing block).
                    B.Attention(q.RowSlice(a, lc), k.RowSlice(a, lc), v.RowSlice(a, lc), Heads, KvHeads, AttentionMask.Causal,
                        output.RowSlice(a, lc), null);
                    pairs += FullAttention.CausalPairs(lc, lc);
                    continue;
                }
                // [passing; anchor; chunk]: the local rows now, the passing rows once the all-gather is in.
                int p = passes ? Plan.ChunkPassingRows(c) : 0;
                keys[i] = Buffer($"keys{i}", p + a + lc, C.KvDim);
                values[i] = Buffer($"values{i}", p + a + lc, C.KvDim);
                B.Copy(k, 0, 0, keys[i]!, p, 0, a, C.KvDim);
                B.Copy(v, 0, 0, values[i]!, p, 0, a, C.KvDim);
                B.Copy(k, a + i * lc, 0, keys[i]!, p + a, 0, lc, C.KvDim);
                B.Copy(v, a + i * lc, 0, values[i]!, p + a, 0, lc, C.KvDim);
            }
        }
        CacheOwnBlock(layer, k, v, a);

        gather?.Complete();
        if (gathered != null)
            using (Measure("other"))
                for (int i = 0; i < 2; i++)
                    if (keys[i] != null) PlacePassing(gathered, chunks[i], keys[i]!, values[i]!);

        using (Measure("attention"))
            for (int i = 0; i < 2; i++)
            {
                if (keys[i] is not { } kk) continue;
                B.Attention(q.RowSlice(a + i * lc, lc), kk, values[i]!, Heads, KvHeads, AttentionMask.Causal,
                    output.RowSlice(a + i * lc, lc), null);
                pairs += FullAttention.CausalPairs(lc, kk.Rows);
            }
        CountAttention(pairs);
    }

    /// <summary>
    /// Copies what chunk reads of the selections of chunks 0..chunk-1 (all of each, or under a passing budget the best
    /// rows, which come first), in chunk order, into rows [0, P) of keys and values.
    /// </summary>
    void PlacePassing(Tensor gathered, int chunk, Tensor keys, Tensor values)
    {
        int row = 0;
        for (int c = 0; c < chunk; c++)
        {
            int n = Plan.ChunkSentRows(c), read = Plan.ChunkReadRows(c, chunk);
            if (read == 0) continue;
            int j = Plan.RankOfChunk(c), at = 0;
            for (int i = 0; i < j; i++) at += 2 * Plan.SentRows(i);
            if (c >= Ranks) at += 2 * Plan.ChunkSentRows(j); // the late chunk follows the early one in rank j's message
            B.Copy(gathered, at, 0, keys, row, 0, read, C.KvDim);
            B.Copy(gathered, at + n, 0, values, row, 0, read, C.KvDim);
            row += read;
        }
    }
}
