using System.Collections.Concurrent;
using System.Text;

namespace Apb.Tokenization;

/// <summary>
/// BPE over one pre-token with HF's <c>BPE</c> model semantics (models/bpe/model.rs merge_word, word.rs merge_all):
/// merges ranked by their line in "merges" (not tiktoken's rank-by-id, which differs where a file lists several merges
/// for one token), the lowest rank first, leftmost among equals; Llama-3's ignore_merges; a memo of recent words.
/// The starting symbols are either the word's bytes in GPT-2's byte alphabet (byte-level BPE: Llama-3, Qwen) or its
/// characters (SentencePiece-style BPE: Llama-2, Mistral, Yi), where a character missing from the vocabulary becomes
/// its UTF-8 bytes as &lt;0xNN&gt; tokens (byte_fallback) or the unknown token (fused over a run when fuse_unk).
/// </summary>
internal sealed class BytePairModel
{
    // Longer words are rare and not worth the memory (HF uses the same bound).
    private const int MaxCachedLength = 256;
    private const int CacheCapacity = 200_000;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabBySpan;
    private readonly Dictionary<long, (int Rank, int NewId)> _merges;
    private readonly bool _byteLevel;
    private readonly int[] _byteIds; // byte-level: the single-byte token; byte fallback: <0xNN>; -1 where missing
    private readonly int? _unkId;
    private readonly bool _fuseUnk;
    private readonly bool _ignoreMerges;
    // A memo only: the result for a word never depends on what was encoded before.
    private readonly ConcurrentDictionary<string, int[]> _cache = new();
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;
    private int _cacheCount;

    public BytePairModel(Dictionary<string, int> vocab, Dictionary<long, (int Rank, int NewId)> merges, BpeOptions options)
    {
        _vocab = vocab;
        _vocabBySpan = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _merges = merges;
        _byteLevel = options.ByteLevel;
        _unkId = options.UnkId;
        _fuseUnk = options.FuseUnk;
        _ignoreMerges = options.IgnoreMerges;
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        _byteIds = new int[256];
        for (int b = 0; b < 256; b++)
        {
            string name = options.ByteLevel ? ByteLevel.ByteToChar[b].ToString()
                : options.ByteFallback ? ByteFallbackName(b) : "";
            _byteIds[b] = vocab.TryGetValue(name, out int id) ? id : -1;
        }
        EveryPieceHasAnId = _unkId is not null || Array.TrueForAll(_byteIds, id => id >= 0);
    }

    /// <summary>
    /// True when no character is ever dropped (every byte has a token, or there is an unknown token): each non-empty
    /// pre-token then yields at least one id, so counting pre-tokens bounds the count of ids from below.
    /// </summary>
    public bool EveryPieceHasAnId { get; }

    /// <summary>How SentencePiece-style vocabularies write a raw byte: &lt;0x0A&gt;.</summary>
    public static string ByteFallbackName(int b) => $"<0x{b:X2}>";

    public static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Appends the ids of one pre-token (original text, before any byte-level mapping).</summary>
    public void Tokenize(ReadOnlySpan<char> word, List<int> output)
    {
        if (word.IsEmpty) return;
        if (_cacheBySpan.TryGetValue(word, out int[]? cached))
        {
            output.AddRange(cached);
            return;
        }
        int[] ids = TokenizeUncached(word);
        output.AddRange(ids);
        if (word.Length < MaxCachedLength)
        {
            // Count is approximate under races, which only moves the moment of the reset.
            if (Interlocked.Increment(ref _cacheCount) > CacheCapacity)
            {
                _cache.Clear();
                Interlocked.Exchange(ref _cacheCount, 0);
            }
            _cacheBySpan.TryAdd(word, ids);
        }
    }

    private int[] TokenizeUncached(ReadOnlySpan<char> word)
    {
        int byteCount = Encoding.UTF8.GetByteCount(word);
        Span<byte> bytes = byteCount <= 256 ? stackalloc byte[byteCount] : new byte[byteCount];
        Encoding.UTF8.GetBytes(word, bytes);
        Span<int> symbols = byteCount <= 256 ? stackalloc int[byteCount] : new int[byteCount];
        int n = 0;
        var unk = new UnknownRun(_unkId, _fuseUnk);

        if (_byteLevel)
        {
            if (_ignoreMerges)
            {
                // Llama-3 sets ignore_merges: a pre-token that is itself in the vocabulary is one token, even where
                // the merges would have split it differently.
                Span<char> mapped = byteCount <= 256 ? stackalloc char[byteCount] : new char[byteCount];
                for (int i = 0; i < byteCount; i++) mapped[i] = ByteLevel.ByteToChar[bytes[i]];
                if (_vocabBySpan.TryGetValue(mapped, out int whole)) return [whole];
            }
            foreach (byte b in bytes)
            {
                if (_byteIds[b] >= 0) unk.Known(_byteIds[b], symbols, ref n);
                else unk.Unknown(symbols, ref n);
            }
        }
        else
        {
            if (_ignoreMerges && _vocabBySpan.TryGetValue(word, out int whole)) return [whole];
            int at = 0; // byte offset of the current character
            for (int i = 0; i < word.Length;)
            {
                int length = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
                int charBytes = Encoding.UTF8.GetByteCount(word.Slice(i, length));
                if (_vocabBySpan.TryGetValue(word.Slice(i, length), out int id)) unk.Known(id, symbols, ref n);
                else if (AllBytesKnown(bytes.Slice(at, charBytes)))
                    // HF adds the byte tokens without closing a pending unknown run first (model.rs merge_word).
                    foreach (byte b in bytes.Slice(at, charBytes)) symbols[n++] = _byteIds[b];
                else unk.Unknown(symbols, ref n);
                i += length;
                at += charBytes;
            }
        }
        unk.Close(symbols, ref n);
        symbols = symbols[..n];
        return n <= SmallWord ? MergeSmall(symbols) : MergeWithHeap(symbols);
    }

    private bool AllBytesKnown(ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
            if (_byteIds[b] < 0) return false;
        return true;
    }

    // HF's unknown-token rule: without an unk token the symbol is dropped; with fuse_unk a run of unknown characters
    // becomes one unk.
    private struct UnknownRun(int? unkId, bool fuse)
    {
        private bool _pending;

        public void Known(int id, Span<int> symbols, ref int n)
        {
            Close(symbols, ref n);
            symbols[n++] = id;
        }

        public void Unknown(Span<int> symbols, ref int n)
        {
            if (unkId is null) return;
            if (_pending && !fuse) symbols[n++] = unkId.Value;
            _pending = true;
        }

        public void Close(Span<int> symbols, ref int n)
        {
            if (_pending) symbols[n++] = unkId!.Value;
            _pending = false;
        }
    }

    private const int SmallWord = 48;

    // HF's heap pops the lowest (rank, position); an entry whose pair has changed is recognised as stale because a
    // changed pair always concatenates to a longer token, hence a different id. So its result is: repeatedly merge the
    // lowest-ranked adjacent pair, leftmost first (equal ranks only occur for equal pairs). For short words that is
    // done here directly, with the pair ranks in an array and no allocation but the result.
    private int[] MergeSmall(Span<int> c)
    {
        int n = c.Length;
        if (n <= 1) return c.ToArray();
        Span<int> rank = stackalloc int[n];
        Span<int> merged = stackalloc int[n];
        for (int i = 0; i + 1 < n; i++) Lookup(c[i], c[i + 1], out rank[i], out merged[i]);
        while (n > 1)
        {
            int best = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < n; i++)
                if (rank[i] < bestRank) { bestRank = rank[i]; best = i; }
            if (best < 0) break;
            c[best] = merged[best];
            // Remove symbol best+1 and pair best+1.
            c[(best + 2)..n].CopyTo(c[(best + 1)..]);
            if (best + 2 < n)
            {
                rank[(best + 2)..(n - 1)].CopyTo(rank[(best + 1)..]);
                merged[(best + 2)..(n - 1)].CopyTo(merged[(best + 1)..]);
            }
            n--;
            if (best + 1 < n) Lookup(c[best], c[best + 1], out rank[best], out merged[best]);
            else rank[best] = int.MaxValue;
            if (best > 0) Lookup(c[best - 1], c[best], out rank[best - 1], out merged[best - 1]);
        }
        return c[..n].ToArray();
    }

    private void Lookup(int left, int right, out int rank, out int newId)
    {
        if (_merges.TryGetValue(PairKey(left, right), out var m)) (rank, newId) = m;
        else (rank, newId) = (int.MaxValue, -1);
    }

    // HF's algorithm as written (models/bpe/word.rs merge_all), for long words where the heap pays off.
    private int[] MergeWithHeap(ReadOnlySpan<int> symbols)
    {
        int n = symbols.Length;
        if (n <= 1) return symbols.ToArray();
        var c = symbols.ToArray();
        var prev = new int[n];
        var next = new int[n];
        var alive = new bool[n];
        for (int i = 0; i < n; i++) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; alive[i] = true; }

        var queue = new PriorityQueue<(int Pos, int NewId), long>(n);
        for (int i = 0; i + 1 < n; i++)
            if (_merges.TryGetValue(PairKey(c[i], c[i + 1]), out var m))
                queue.Enqueue((i, m.NewId), Priority(m.Rank, i));

        while (queue.TryDequeue(out var top, out _))
        {
            int pos = top.Pos;
            if (!alive[pos] || next[pos] < 0) continue;
            int right = next[pos];
            if (!_merges.TryGetValue(PairKey(c[pos], c[right]), out var current) || current.NewId != top.NewId) continue;

            c[pos] = top.NewId;
            alive[right] = false;
            next[pos] = next[right];
            if (next[right] >= 0) prev[next[right]] = pos;

            if (prev[pos] >= 0 && _merges.TryGetValue(PairKey(c[prev[pos]], c[pos]), out var left))
                queue.Enqueue((prev[pos], left.NewId), Priority(left.Rank, prev[pos]));
            if (next[pos] >= 0 && _merges.TryGetValue(PairKey(c[pos], c[next[pos]]), out var after))
                queue.Enqueue((pos, after.NewId), Priority(after.Rank, pos));
        }

        var result = new List<int>(n);
        for (int i = 0; i >= 0; i = next[i]) result.Add(c[i]);
        return result.ToArray();
    }

    private static long Priority(int rank, int pos) => ((long)rank << 32) | (uint)pos;

    public int? TokenToId(string token) => _vocab.TryGetValue(token, out int id) ? id : null;
}

/// <summary>The BPE model's switches from tokenizer.json.</summary>
internal sealed record BpeOptions(bool ByteLevel, bool ByteFallback, int? UnkId, bool FuseUnk, bool IgnoreMerges);
