namespace Apb.Strategies;

/// <summary>How context tokens are dealt to ranks.</summary>
public enum SequenceLayout
{
    /// <summary>Rank r holds tokens [r l_b, (r+1) l_b).</summary>
    Contiguous,
    /// <summary>
    /// 2H chunks of l_c tokens; rank r holds chunks r and 2H-1-r, so every rank has one early and one late chunk and the
    /// causal work of a ring is balanced.
    /// </summary>
    Zigzag,
}

/// <summary>
/// Which tokens each of H ranks holds during a sequence-parallel prefill of n context tokens (the query is not part of
/// it: it goes through the exact "star" phase afterwards). The context is padded at the end to H x l_b; pad rows come
/// after every real token, so causal masking alone keeps them invisible to real tokens, and they are never cached or
/// selected. Ranks r >= 1 may carry an anchor in front of their block (APB, Star): l_a tokens at positions 0..l_a-1.
/// </summary>
public sealed class SequencePlan
{
    /// <summary>n: context tokens, without the query.</summary>
    public int ContextLength { get; }
    /// <summary>H.</summary>
    public int Ranks { get; }
    public SequenceLayout Layout { get; }
    /// <summary>Rows of context each rank holds: l_b (zigzag: two chunks of <see cref="ChunkLength"/>).</summary>
    public int BlockLength { get; }
    /// <summary>Zigzag chunk length l_c; equals BlockLength for the contiguous layout.</summary>
    public int ChunkLength { get; }
    public int PaddedLength => Ranks * BlockLength;
    /// <summary>l_a: anchor rows in front of the block on ranks >= 1 (0: no anchor).</summary>
    public int AnchorLength { get; }
    /// <summary>l_p: tokens per KV head each rank passes to the ranks after it (APB).</summary>
    public int PassingLength { get; }
    /// <summary>Query tokens inserted into the anchor (0 when the anchor is the plain context start, as in Star).</summary>
    public int QueryLength { get; }
    /// <summary>Where the query goes inside the anchor: after this many context tokens (the chat template's header).</summary>
    public int AnchorInsertAt { get; }
    /// <summary>
    /// Tokens per KV head each chunk passes to the chunks after it: l_p for the contiguous layout (a chunk is a block),
    /// ceil(l_p / 2) for balanced APB, whose ranks hold two chunks each (docs/apb-algorithm.md, 2.6).
    /// </summary>
    public int ChunkPassingLength { get; }
    /// <summary>
    /// B: the most passed rows per KV head a chunk reads (0: no budget, every earlier chunk's whole selection, as the
    /// paper). Chunk c, with c earlier chunks sending, reads the best floor(B / c) rows of each selection, so a late
    /// chunk reads about B rows however many chunks precede it (docs/apb-algorithm.md, 2.8).
    /// </summary>
    public int PassingBudget { get; }

    SequencePlan(int n, int ranks, SequenceLayout layout, int chunk, int anchor, int passing, int query, int insertAt,
        int? chunkPassing = null, int budget = 0)
    {
        ContextLength = n; Ranks = ranks; Layout = layout; ChunkLength = chunk;
        BlockLength = layout == SequenceLayout.Zigzag ? 2 * chunk : chunk;
        AnchorLength = anchor; PassingLength = passing; QueryLength = query; AnchorInsertAt = insertAt;
        ChunkPassingLength = chunkPassing ?? passing;
        PassingBudget = budget;
    }

    /// <summary>Ring, Ulysses: contiguous blocks, no anchor.</summary>
    public static SequencePlan Contiguous(int n, int ranks)
    {
        CheckRanks(n, ranks);
        return new SequencePlan(n, ranks, SequenceLayout.Contiguous, Ceil(n, ranks), 0, 0, 0, 0);
    }

    /// <summary>Zigzag ring: 2H chunks of ceil(n / 2H), padded at the end to 2H chunks.</summary>
    public static SequencePlan Zigzag(int n, int ranks)
    {
        CheckRanks(n, ranks);
        return new SequencePlan(n, ranks, SequenceLayout.Zigzag, Ceil(n, 2 * ranks), 0, 0, 0, 0);
    }

    /// <summary>Star Attention: the anchor is the plain first block (l_a = l_b, no query), nothing is passed.</summary>
    public static SequencePlan Star(int n, int ranks)
    {
        CheckRanks(n, ranks);
        int lb = Ceil(n, ranks);
        return new SequencePlan(n, ranks, SequenceLayout.Contiguous, lb, ranks > 1 ? lb : 0, 0, 0, 0);
    }

    /// <summary>
    /// APB: anchor of <paramref name="anchor"/> tokens (the context start with the query inserted after
    /// <paramref name="insertAt"/> tokens), <paramref name="passing"/> tokens per KV head passed forward by each rank,
    /// each rank reading at most <paramref name="budget"/> of them (<see cref="PassingBudget"/>; 0: all).
    /// </summary>
    public static SequencePlan Apb(int n, int ranks, int anchor, int passing, int queryLength, int insertAt, int budget = 0)
    {
        CheckRanks(n, ranks);
        int lb = Ceil(n, ranks);
        CheckApbLengths(n, ranks, lb, anchor, passing, queryLength, insertAt, budget);
        return new SequencePlan(n, ranks, SequenceLayout.Contiguous, lb, ranks > 1 ? anchor : 0, ranks > 1 ? passing : 0,
            queryLength, insertAt, budget: ranks > 1 ? budget : 0);
    }

    /// <summary>
    /// Balanced APB: the zigzag layout (2H chunks of l_c = ceil(n / 2H), rank r holding chunks r and 2H-1-r), an anchor
    /// in front of every rank's rows (rank 0's late chunk needs one too; its early chunk, the context start, does not
    /// read it), and each chunk passing ceil(l_p / 2) tokens per KV head, so that a rank's two chunks pass what one
    /// contiguous block of the same length would. <paramref name="passing"/> is l_p per rank, as for <see cref="Apb"/>.
    /// One rank gets the contiguous plan (no anchor, nothing passed: full attention). A <paramref name="budget"/> caps
    /// what each chunk reads, as it caps each block of contiguous APB (<see cref="PassingBudget"/>).
    /// </summary>
    public static SequencePlan ApbBalanced(int n, int ranks, int anchor, int passing, int queryLength, int insertAt, int budget = 0)
    {
        // One rank has nothing to balance: the contiguous plan, full attention.
        if (ranks == 1) return Apb(n, ranks, anchor, passing, queryLength, insertAt, budget);
        CheckRanks(n, ranks);
        int lc = Ceil(n, 2 * ranks);
        CheckApbLengths(n, ranks, 2 * lc, anchor, passing, queryLength, insertAt, budget);
        // Every chunk's rows see the whole anchor: one longer than chunk 0 would show chunk 1's rows context after them.
        if (anchor > lc)
            throw new ApbException($"anchor of {anchor} tokens is longer than a chunk of {lc} tokens ({n} context tokens in {2 * ranks} chunks over {ranks} ranks): balanced APB's second chunk would see later context through it; use --anchor {lc} or less, fewer ranks, or --strategy apb");
        return new SequencePlan(n, ranks, SequenceLayout.Zigzag, lc, anchor, passing, queryLength, insertAt, Ceil(passing, 2), budget);
    }

    /// <summary>A passing budget is a count of rows, 0 for none (<see cref="PassingBudget"/>).</summary>
    public static void CheckPassingBudget(int budget)
    {
        if (budget < 0) throw new ApbException($"--passing-budget must be >= 0 (0: no budget), got {budget}");
    }

    static void CheckApbLengths(int n, int ranks, int lb, int anchor, int passing, int queryLength, int insertAt, int budget)
    {
        if (anchor < 0) throw new ApbException($"anchor length must be >= 0, got {anchor}");
        if (passing < 0) throw new ApbException($"passing length must be >= 0, got {passing}");
        CheckPassingBudget(budget);
        if (anchor > lb)
            throw new ApbException($"anchor of {anchor} tokens is longer than the block of {lb} tokens ({n} context tokens over {ranks} ranks): use --anchor {lb} or less, or fewer ranks");
        if (passing > lb)
            throw new ApbException($"passing length of {passing} tokens is longer than the block of {lb} tokens ({n} context tokens over {ranks} ranks): use --passing {lb} or less, or fewer ranks");
        if (insertAt < 0 || insertAt > n)
            throw new ApbException($"anchor insert position {insertAt} is outside the context of {n} tokens");
        if (ranks > 1 && anchor > 0 && insertAt + queryLength > anchor)
            throw new ApbException(queryLength > anchor
                ? $"the query of {queryLength} tokens is longer than the anchor of {anchor} tokens: use --anchor {insertAt + queryLength} or more (the query goes after {insertAt} header tokens), or shorten the query"
                : $"the query of {queryLength} tokens inserted after {insertAt} header tokens does not fit in the anchor of {anchor} tokens: use --anchor {insertAt + queryLength} or more");
    }

    static void CheckRanks(int n, int ranks)
    {
        if (ranks < 1) throw new ApbException($"--ranks must be at least 1, got {ranks}");
        if (n < ranks)
            throw new ApbException($"the context has {n} tokens but {ranks} ranks were asked for: every rank needs at least one context token (use --ranks {Math.Max(1, n)} or fewer)");
    }

    static int Ceil(int a, int b) => (a + b - 1) / b;

    /// <summary>Global positions of the rows of rank's block (pad rows continue past n).</summary>
    public int[] Positions(int rank)
    {
        var p = new int[BlockLength];
        if (Layout == SequenceLayout.Contiguous)
            for (int i = 0; i < p.Length; i++) p[i] = rank * BlockLength + i;
        else
            for (int i = 0; i < ChunkLength; i++)
            {
                p[i] = rank * ChunkLength + i;
                p[ChunkLength + i] = (2 * Ranks - 1 - rank) * ChunkLength + i;
            }
        return p;
    }

    /// <summary>
    /// Real (non-pad) rows of rank's block. They are always a prefix of the block: padding is a suffix of the sequence, and
    /// in the zigzag layout a rank's first chunk precedes its second, so pad in the first chunk means the second is all pad.
    /// </summary>
    public int RealRows(int rank)
    {
        int real = 0;
        foreach (int p in Positions(rank)) if (p < ContextLength) real++;
        return real;
    }

    /// <summary>
    /// Anchor rows in front of rank's block. Contiguous: rank 0 has none, its block is the context start. Zigzag (balanced
    /// APB; the zigzag ring has no anchor): every rank has one, rank 0's late chunk reads it.
    /// </summary>
    public int AnchorRows(int rank) => rank == 0 && Layout == SequenceLayout.Contiguous ? 0 : AnchorLength;

    /// <summary>Rows of rank's local sequence: [anchor; block].</summary>
    public int LocalRows(int rank) => AnchorRows(rank) + BlockLength;

    /// <summary>
    /// Tokens per KV head rank contributes to the passing blocks: what its chunks send (<see cref="ChunkSentRows"/>); for
    /// the contiguous layout l_p, fewer when the block has fewer real tokens, none on the last rank.
    /// </summary>
    public int SentRows(int rank) => ChunksOf(rank).Sum(ChunkSentRows);

    /// <summary>Rows of rank's largest passing block: what the chunks before its last chunk sent.</summary>
    public int PassingRows(int rank) => ChunkPassingRows(ChunksOf(rank)[^1]);

    // A chunk is the unit APB scores and passes: the block itself in the contiguous layout (chunk c on rank c), one of
    // a rank's two chunks in the zigzag layout (chunk c on rank c, or on rank 2H-1-c from c = H on).

    /// <summary>Chunks of the context: H (contiguous) or 2H (zigzag).</summary>
    public int ChunkCount => Layout == SequenceLayout.Zigzag ? 2 * Ranks : Ranks;

    /// <summary>Rank's chunks in the order of its block's rows: [r] or [r, 2H-1-r].</summary>
    public int[] ChunksOf(int rank) => Layout == SequenceLayout.Zigzag ? [rank, 2 * Ranks - 1 - rank] : [rank];

    /// <summary>The rank that holds chunk c.</summary>
    public int RankOfChunk(int chunk) => chunk < Ranks ? chunk : 2 * Ranks - 1 - chunk;

    /// <summary>Real (non-pad) rows of chunk c: tokens [c l_c, (c + 1) l_c) that fall inside the context.</summary>
    public int ChunkRealRows(int chunk) => Math.Clamp(ContextLength - chunk * ChunkLength, 0, ChunkLength);

    /// <summary>
    /// Context tokens the anchor holds: its first l_a - q rows are context positions 0 .. l_a - q - 1 (the query takes the
    /// rest); 0 without an anchor.
    /// </summary>
    public int AnchorContextRows => AnchorLength == 0 ? 0 : Math.Clamp(AnchorLength - QueryLength, 0, ContextLength);

    /// <summary>
    /// Rows at the start of chunk c that the anchor holds (context positions below <see cref="AnchorContextRows"/>): every
    /// chunk that reads c's selection has the anchor in front of it, so these rows are already visible there and are
    /// neither scored nor passed (docs/apb-algorithm.md, 2.3d). In practice the first rows of chunk 0.
    /// </summary>
    public int ChunkSkippedRows(int chunk) => Math.Clamp(AnchorContextRows - chunk * ChunkLength, 0, ChunkRealRows(chunk));

    /// <summary>Rows of chunk c that may be passed: its real rows past those the anchor holds.</summary>
    public int ChunkSelectableRows(int chunk) => ChunkRealRows(chunk) - ChunkSkippedRows(chunk);

    /// <summary>
    /// Tokens per KV head chunk c passes to the chunks after it: the chunk's passing length, fewer when it has fewer
    /// selectable tokens (pad is never selected, nor what the anchor holds), none for the last chunk (no chunk after it
    /// would read them). Under a budget no more than the most any later chunk reads: chunk c + 1's floor(B / (c + 1)).
    /// </summary>
    public int ChunkSentRows(int chunk)
    {
        if (chunk == ChunkCount - 1) return 0;
        int sent = Math.Min(ChunkPassingLength, ChunkSelectableRows(chunk));
        return PassingBudget > 0 ? Math.Min(sent, PassingBudget / (chunk + 1)) : sent;
    }

    /// <summary>
    /// Rows per KV head of chunk <paramref name="sender"/>'s selection that chunk <paramref name="receiver"/> (a later
    /// one) reads: all it sent, or under a budget the first floor(B / receiver) of them, which the sender ordered best
    /// first (<see cref="ChunkSendsBestFirst"/>).
    /// </summary>
    public int ChunkReadRows(int sender, int receiver)
    {
        if (sender < 0 || receiver <= sender || receiver >= ChunkCount)
            throw new ArgumentOutOfRangeException(nameof(receiver), $"chunk {receiver} does not read chunk {sender}'s selection ({ChunkCount} chunks)");
        int sent = ChunkSentRows(sender);
        return PassingBudget > 0 ? Math.Min(sent, PassingBudget / receiver) : sent;
    }

    /// <summary>
    /// Whether chunk c orders its selection best first (each prefix its own best rows, <see cref="Backends.IPassingOps.SelectPassing"/>):
    /// under a budget, when some later chunk reads fewer rows than it sent (the last one reads the fewest).
    /// </summary>
    public bool ChunkSendsBestFirst(int chunk) =>
        PassingBudget > 0 && chunk < ChunkCount - 1 && ChunkReadRows(chunk, ChunkCount - 1) < ChunkSentRows(chunk);

    /// <summary>
    /// Whether chunk c scores its selectable rows: it passes some of them but not all (a chunk with no more selectable
    /// rows than its passing length passes them whole, without scoring), or later chunks read only its best ones.
    /// </summary>
    public bool ChunkScores(int chunk) => ChunkSentRows(chunk) > 0 &&
        (ChunkSentRows(chunk) < ChunkSelectableRows(chunk) || ChunkSendsBestFirst(chunk));

    /// <summary>Rows of chunk c's passing block: what it reads of chunks 0..c-1's selections, in chunk order.</summary>
    public int ChunkPassingRows(int chunk)
    {
        int p = 0;
        for (int j = 0; j < chunk; j++) p += ChunkReadRows(j, chunk);
        return p;
    }

    /// <summary>
    /// The most passed rows per KV head one rank holds: its chunks' passing blocks together, the largest over the ranks
    /// (the last rank's without a budget; under one, a middle rank's may be larger). What the memory models size by.
    /// </summary>
    public int MostPassingRows => Enumerable.Range(0, Ranks).Max(r => ChunksOf(r).Sum(ChunkPassingRows));

    /// <summary>"l_a 4096, l_p 1024 (512 per chunk), passing budget 2048": APB's lengths as tables, notes and labels print them.</summary>
    public string ApbLengths => $"l_a {AnchorLength}, l_p {PassingLength}" +
        (ChunkPassingLength != PassingLength ? $" ({ChunkPassingLength} per chunk)" : "") + StrategyOptions.BudgetLabel(PassingBudget);

    /// <summary>
    /// The anchor's tokens: the context start with the query inserted after <see cref="AnchorInsertAt"/> tokens, truncated
    /// to l_a. Star's anchor has no query (QueryLength 0), so it is the plain first block.
    /// </summary>
    public int[] AnchorIds(IReadOnlyList<int> context, IReadOnlyList<int> query)
    {
        Check(context, query);
        var ids = new List<int>(AnchorLength + QueryLength);
        for (int i = 0; i < AnchorInsertAt; i++) ids.Add(context[i]);
        for (int i = 0; i < QueryLength; i++) ids.Add(query[i]);
        for (int i = AnchorInsertAt; i < context.Count && ids.Count < AnchorLength; i++) ids.Add(context[i]);
        return ids.Take(AnchorLength).ToArray();
    }

    /// <summary>Rank's local token ids: [anchor; block], pad rows filled with <paramref name="padId"/>.</summary>
    public int[] LocalIds(int rank, IReadOnlyList<int> context, IReadOnlyList<int> query, int padId)
    {
        Check(context, query);
        var ids = new int[LocalRows(rank)];
        int a = AnchorRows(rank);
        if (a > 0) AnchorIds(context, query).CopyTo(ids, 0);
        var pos = Positions(rank);
        for (int i = 0; i < pos.Length; i++) ids[a + i] = pos[i] < ContextLength ? context[pos[i]] : padId;
        return ids;
    }

    /// <summary>Positions of rank's local rows: the anchor's 0..l_a-1, then the block's global positions.</summary>
    public int[] LocalPositions(int rank)
    {
        int a = AnchorRows(rank);
        var p = new int[a + BlockLength];
        for (int i = 0; i < a; i++) p[i] = i;
        Positions(rank).CopyTo(p, a);
        return p;
    }

    void Check(IReadOnlyList<int> context, IReadOnlyList<int> query)
    {
        if (context.Count != ContextLength || query.Count < QueryLength)
            throw new ArgumentException($"plan is for {ContextLength} context and {QueryLength} query tokens, got {context.Count} and {query.Count}");
    }

    public override string ToString() =>
        $"{Ranks} ranks x {BlockLength} rows ({Layout}), n = {ContextLength}, pad {PaddedLength - ContextLength}, l_a = {AnchorLength}, l_p = {PassingLength}" +
        (ChunkPassingLength != PassingLength ? $" ({ChunkPassingLength} per chunk)" : "") +
        (PassingBudget > 0 ? $", passing budget {PassingBudget}" : "");
}
