using Apb.Attention;
using Apb.Backends;
using Apb.Checkpoints;
using Apb.Model;
using Apb.Strategies;
using Apb.Strategies.Apb;

namespace Apb.Diagnostics;

/// <summary>
/// How much of full attention's softmax a block row keeps when APB or Star lets it see only part of the context, layer
/// by layer, on one sample (`apb eval coverage`; why: bench/results/apb-multikey-gpu-20261205, where more passed rows
/// cost multi-key accuracy). The model runs full attention over the context; at each layer, with that layer's q and k:
///   - each rank's passing selection is made as APB's ranks make it, on the rows its <see cref="SequencePlan"/> says
///     (selectable, sent, scored or passed whole): the retaining heads on the block's pre-RoPE q, k, v, the novelty term
///     on its rotated keys, the max-pool and the top rows per KV head, from full attention's q, k, v;
///   - for sampled rows i of ranks 1 .. R-1 and every query head, with s_ij = q_i . k_j / sqrt(d) over the keys j &lt;= i,
///     coverage = sum over the visible keys of exp(s_ij) / sum over all keys j &lt;= i: 1 when the row sees everything
///     full attention sees. Visible: Star, the first block and the row's own block up to it; APB, the anchor (the
///     context's first l_a positions), the rows ranks 0 .. r-1 passed for the row's KV head (under a passing budget the
///     first floor(B / r) of each, which their senders ordered best first), and its own block.
///   - passed share: of the visible mass, the part on passed rows (what APB's softmax gives them), and of the full mass
///     (what full attention gives the same rows);
///   - output error: |o - o_full| / |o_full| for the row's attention output o over its visible keys (softmax over
///     them, the layer's v) against full attention's, the same q, k and v: how far the layer's result moves, before any
///     drift of the activations from one layer to the next; also per rank, since a later APB rank reads more passed
///     rows (r earlier ranks' passing blocks) while a Star rank reads one block however late it is.
/// The plans are APB's with a query-free anchor (--anchor-query false: the anchor is the context start, no query), the
/// one layout a forward over the context alone can show; the default anchor holds the query too. The selections come
/// from full attention's activations, where APB's ranks score their own (which drift from full attention's layer by
/// layer). Both are said where the numbers are printed.
/// </summary>
public sealed class PassingCoverage : IAttention, IDisposable
{
    /// <summary>A visible set: Star (<see cref="Plan"/> null), or APB with this plan (its passing length and budget).</summary>
    public sealed record Setting(SequencePlan? Plan)
    {
        public int? Passing => Plan?.PassingLength;
        public string Name => Plan is not { } p ? "star" : $"apb l_p {p.PassingLength}" + (p.PassingBudget > 0 ? $" B {p.PassingBudget}" : "");
        internal (int Passing, int Budget) Key => (Plan?.PassingLength ?? -1, Plan?.PassingBudget ?? 0);
    }

    /// <summary>
    /// One layer's means over the sampled rows and heads; <paramref name="OutputErrorByRank"/>[r - 1] is the output error's
    /// mean over rank r's rows (ranks 1 .. R-1, the same number of rows each where every block holds that many, and then
    /// their mean is <paramref name="OutputError"/>; a rank with no rows has NaN).
    /// </summary>
    public sealed record LayerResult(int Layer, Setting Setting, double Coverage, double PassedShareVisible, double PassedShareFull, double OutputError,
        IReadOnlyList<double> OutputErrorByRank);

    readonly IBackend _b;
    readonly ModelConfig _c;
    readonly RopeTable _rope;
    readonly FullAttention _full;
    readonly RetainingHeadScorer _heads;
    readonly NoveltyTerm? _novelty;
    readonly float _noveltyWeight;
    readonly int _n, _ranks, _block, _anchor, _rowsPerBlock;

    public IReadOnlyList<Setting> Settings { get; }
    public List<LayerResult> Results { get; } = [];

    /// <param name="plans">APB's plans to measure (SequencePlanner's, a query-free anchor), one per passing length and
    /// budget, all of one context, rank count and anchor; Star (the same blocks, the first one as its anchor) is always
    /// measured</param>
    /// <param name="rowsPerBlock">rows sampled per block of ranks 1 .. R-1, evenly spaced</param>
    public PassingCoverage(IBackend backend, ModelConfig config, RopeTable rope, RetainingHeadScorer heads, float noveltyWeight,
        IReadOnlyList<SequencePlan> plans, int rowsPerBlock)
    {
        var first = plans.Count > 0 ? plans[0] : throw new ArgumentException("coverage: no plan to measure");
        if (first.Ranks < 2) throw new ApbException($"coverage needs at least 2 ranks (got {first.Ranks}): one rank sees the whole context");
        if (rowsPerBlock < 1) throw new ApbException($"rows per block must be at least 1 (got {rowsPerBlock})");
        if (plans.Any(p => p.Layout != SequenceLayout.Contiguous || p.QueryLength != 0 || p.ContextLength != first.ContextLength
                           || p.Ranks != first.Ranks || p.AnchorLength != first.AnchorLength))
            throw new ArgumentException("coverage: the plans must be contiguous APB with a query-free anchor, of one context, rank count and anchor");
        _b = backend; _c = config; _rope = rope; _heads = heads; _noveltyWeight = noveltyWeight;
        _novelty = noveltyWeight != 0 ? new NoveltyTerm(backend, config) : null;
        _n = first.ContextLength; _ranks = first.Ranks; _block = first.BlockLength; _anchor = first.AnchorLength;
        _rowsPerBlock = rowsPerBlock;
        _full = new FullAttention(backend, config, rope, _n);
        Settings = [new Setting(null), .. plans.Select(p => new Setting(p)).DistinctBy(s => s.Key).OrderBy(s => s.Key)];
    }

    (int Start, int End) Block(int rank) => (Math.Min(_n, rank * _block), Math.Min(_n, (rank + 1) * _block));

    public void Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor output)
    {
        if (q.Rows != _n) throw new ArgumentException($"coverage: a forward of {_n} rows in one call, got {q.Rows}");
        // Pre-RoPE copies for the retaining heads: full attention rotates q and k in place.
        using var qPre = Copy(q); using var kPre = Copy(k); using var vPre = Copy(v);
        _full.Attend(layer, q, k, v, output);
        var passed = Selections(layer, qPre, kPre, vPre, k);

        int h = _c.NumAttentionHeads, kv = _c.NumKeyValueHeads, d = _c.HeadDim;
        var qh = new float[(long)_n * h * d]; _b.Download(q, qh);
        var kh = new float[(long)_n * kv * d]; _b.Download(k, kh);
        var vh = new float[(long)_n * kv * d]; _b.Download(v, vh);
        var rows = new List<int>();
        for (int r = 1; r < _ranks; r++)
        {
            var (s, e) = Block(r);
            for (int t = 0; t < _rowsPerBlock && e > s; t++) rows.Add(s + (int)((2L * t + 1) * (e - s) / (2L * _rowsPerBlock)));
        }
        // Per (row, head) and setting: coverage, the two passed shares and the output error, each item in its own slot
        // and summed in order after, so that a run's numbers do not depend on how the threads split the items.
        int items = rows.Count * h, ns = Settings.Count;
        var each = new double[items, ns, 4];
        Parallel.For(0, items, () => new double[_n], (x, _, logits) =>
        {
            int i = rows[x / h], head = x % h, g = head / (h / kv), r = i / _block;
            // logits: s_ij, then exp(s_ij - max) in place: the passed rows' weights below are the same doubles
            double scale = 1.0 / Math.Sqrt(d), max = double.NegativeInfinity;
            var qi = qh.AsSpan((int)((long)i * h * d + head * d), d);
            for (int j = 0; j <= i; j++)
            {
                float dot = 0;
                var kj = kh.AsSpan((int)((long)j * kv * d + g * d), d);
                for (int c = 0; c < d; c++) dot += qi[c] * kj[c];
                logits[j] = dot * scale;
                if (logits[j] > max) max = logits[j];
            }
            double all = 0, own = 0, firstBlock = 0, anchor = 0;
            // Sums of e_j v_j over the same sets, for the outputs.
            var oAll = new double[d]; var oOwn = new double[d]; var oFirst = new double[d]; var oAnchor = new double[d];
            int ownStart = Block(r).Start;
            for (int j = 0; j <= i; j++)
            {
                double e = Math.Exp(logits[j] - max);
                logits[j] = e;
                var vj = vh.AsSpan((int)((long)j * kv * d + g * d), d);
                all += e; Add(oAll, vj, e);
                if (j >= ownStart) { own += e; Add(oOwn, vj, e); }
                else if (j < _block) { firstBlock += e; Add(oFirst, vj, e); }
                if (j < _anchor) { anchor += e; Add(oAnchor, vj, e); }
            }
            for (int si = 0; si < Settings.Count; si++)
            {
                var setting = Settings[si];
                double visible, onPassed = 0;
                var o = new double[d];
                if (setting.Plan is not { } plan)
                {
                    visible = firstBlock + own;
                    for (int c = 0; c < d; c++) o[c] = oFirst[c] + oOwn[c];
                }
                else
                {
                    var sel = passed[setting.Key];
                    for (int c = 0; c < d; c++) o[c] = oAnchor[c] + oOwn[c];
                    for (int j = 0; j < r; j++)
                        foreach (int pos in sel[j][g].AsSpan(0, plan.ChunkReadRows(j, r)))
                        {
                            double e = logits[pos]; // exp(s - max), kept above
                            onPassed += e;
                            Add(o, vh.AsSpan((int)((long)pos * kv * d + g * d), d), e);
                        }
                    visible = anchor + onPassed + own;
                }
                double diff = 0, norm = 0;
                for (int c = 0; c < d; c++)
                {
                    double full = oAll[c] / all, mine = visible > 0 ? o[c] / visible : 0;
                    diff += (mine - full) * (mine - full); norm += full * full;
                }
                each[x, si, 0] = visible / all;
                each[x, si, 1] = visible > 0 ? onPassed / visible : 0;
                each[x, si, 2] = onPassed / all;
                each[x, si, 3] = norm > 0 ? Math.Sqrt(diff / norm) : 0;
            }
            return logits;
        }, _ => { });
        // Item x's rank less one (rows are of ranks 1 .. R-1), and each rank's item count.
        var rankOf = new int[items];
        var itemsOfRank = new int[_ranks - 1];
        for (int x = 0; x < items; x++) itemsOfRank[rankOf[x] = rows[x / h] / _block - 1]++;
        for (int si = 0; si < ns; si++)
        {
            var mean = new double[4];
            var byRank = itemsOfRank.Select(c => c == 0 ? double.NaN : 0.0).ToArray();
            for (int x = 0; x < items; x++)
            {
                for (int m = 0; m < 4; m++) mean[m] += each[x, si, m] / items;
                byRank[rankOf[x]] += each[x, si, 3] / itemsOfRank[rankOf[x]];
            }
            Results.Add(new LayerResult(layer, Settings[si], mean[0], mean[1], mean[2], mean[3], byRank));
        }

        static void Add(double[] o, ReadOnlySpan<float> v, double e)
        {
            for (int c = 0; c < o.Length; c++) o[c] += e * v[c];
        }
    }

    /// <summary>
    /// For each APB setting (by its l_p and budget), the rows each rank 0 .. R-2 passes at this layer, per KV head, as
    /// positions in the context, in the order it sends them: what <see cref="ApbAttention"/> sends for that plan (its
    /// selectable rows past those the anchor holds, all of them where the plan says the rank does not score, else the top
    /// rows of the heads' scores mixed with the novelty term, best first where later ranks read prefixes). The plans
    /// share the anchor, so a rank's selectable rows and their scores are the same for every setting: each rank is scored
    /// once, and each plan picks its own count from those scores.
    /// </summary>
    Dictionary<(int, int), int[][][]> Selections(int layer, Tensor qPre, Tensor kPre, Tensor vPre, Tensor kRotated)
    {
        int kv = _c.NumKeyValueHeads;
        var settings = Settings.Where(s => s.Plan is not null).ToList();
        var result = settings.ToDictionary(s => s.Key, _ => new int[_ranks - 1][][]);
        for (int r = 0; r < _ranks - 1; r++)
        {
            Tensor? scores = null;   // the scorers' own buffer: valid until the next rank is scored
            foreach (var setting in settings)
            {
                var plan = setting.Plan!;
                int from = r * _block + plan.ChunkSkippedRows(r), rows = plan.ChunkSelectableRows(r), sent = plan.ChunkSentRows(r);
                var perHead = new int[kv][];
                result[setting.Key][r] = perHead;
                if (!plan.ChunkScores(r))
                {
                    // Nothing passed, or every selectable row (the first `sent`, which are all of them).
                    for (int g = 0; g < kv; g++) perHead[g] = [.. Enumerable.Range(from, sent)];
                    continue;
                }
                if (scores is null)
                {
                    scores = _heads.ScoreOnDevice(layer, qPre.RowSlice(from, rows), kPre.RowSlice(from, rows), vPre.RowSlice(from, rows), rows);
                    if (_novelty is not null)
                    {
                        scores = _novelty.Widened(scores);
                        _novelty.MixInto(scores, kRotated.RowSlice(from, rows), _noveltyWeight);
                    }
                }
                using var picked = _b.Passing.AllocateRows(sent, kv);
                _b.Passing.SelectPassing(scores, kv, picked, plan.ChunkSendsBestFirst(r));
                var idx = new int[sent * kv];
                _b.Passing.Download(picked, idx);
                for (int g = 0; g < kv; g++)
                {
                    perHead[g] = new int[sent];
                    for (int i = 0; i < sent; i++) perHead[g][i] = from + idx[i * kv + g];
                }
            }
        }
        return result;
    }

    Tensor Copy(Tensor x)
    {
        var t = _b.Allocate(x.Rows, x.Cols);
        _b.Copy(x, 0, 0, t, 0, 0, x.Rows, x.Cols);
        return t;
    }

    public void Dispose()
    {
        _full.Dispose();
        _novelty?.Dispose();
    }
}
