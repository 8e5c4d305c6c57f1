using System.Text;

namespace Apb.Tokenization;

/// <summary>
/// A Hugging Face tokenizer.json of the BPE families (byte-level: Llama-3, Qwen2/2.5/3, GPT-2-style; SentencePiece-style
/// with byte fallback: Llama-2, Mistral, Yi), encoding and decoding exactly as HF's <c>tokenizers</c> library does,
/// with the pipeline transformers builds from tokenizer_config.json where it rebuilds one
/// (<see cref="TransformersTokenizerClass"/>). Thread-safe.
/// <para>
/// Pipeline, as in HF: added tokens are cut out of the raw text (leftmost-longest), the rest is normalized (NFC, or
/// SentencePiece's "▁" prefix and space replacement), split by the pre-tokenizer (regexes then GPT-2's byte alphabet,
/// or Metaspace, or not at all) and merged by BPE; the post-processor adds BOS etc. when special tokens are requested.
/// Ours rather than Microsoft.ML.Tokenizers': its BpeTokenizer cannot express Llama-3's ignore_merges, its
/// TiktokenTokenizer keeps special tokens only in an evicting cache, and neither reads tokenizer.json; owning the code
/// lets the tests hold every step to HF's Rust implementation.
/// </para>
/// </summary>
public sealed class HfTokenizer
{
    private readonly BytePairModel _model;
    private readonly PreTokenizer _preTokenizer;
    private readonly AddedTokenMatcher? _rawMatcher;        // added tokens with normalized: false
    private readonly AddedTokenMatcher? _normalizedMatcher; // added tokens with normalized: true
    private readonly Normalizer _normalizer;
    private readonly PostProcessor _post;
    private readonly Dictionary<string, int> _addedByContent = new(StringComparer.Ordinal);
    private readonly string?[] _idToToken;
    private readonly bool[] _special;

    private HfTokenizer(TokenizerFile file, TokenizerConfig config, string? configPath)
    {
        _model = new BytePairModel(file.Vocab, file.Merges, file.Bpe);
        _preTokenizer = file.PreTokenizer;
        _normalizer = file.Normalizer;
        _post = file.PostProcessor;

        int size = 0;
        foreach (int id in file.Vocab.Values) size = Math.Max(size, id + 1);
        foreach (var t in file.AddedTokens) size = Math.Max(size, t.Id + 1);
        VocabSize = size;

        _idToToken = new string?[size];
        _special = new bool[size];
        foreach (var (token, id) in file.Vocab) _idToToken[id] = token;
        foreach (var t in file.AddedTokens)
        {
            _idToToken[t.Id] = t.Content;
            _special[t.Id] = t.Special;
            _addedByContent[t.Content] = t.Id;
        }

        var raw = file.AddedTokens.Where(t => !t.Normalized).Select(t => (t.Content, t)).ToList();
        // HF matches these in normalized text, against their content normalized the same way.
        var normalized = file.AddedTokens.Where(t => t.Normalized).Select(t => (_normalizer.Normalize(t.Content), t)).ToList();
        _rawMatcher = raw.Count > 0 ? new AddedTokenMatcher(raw) : null;
        _normalizedMatcher = normalized.Count > 0 ? new AddedTokenMatcher(normalized) : null;
        Decoding = new DecodeTable(file.Decoder, _idToToken, _special);

        int specialCount = file.AddedTokens.Count(t => t.Special);
        Kind = $"{Describe(file)}, {size} tokens, {specialCount} special";

        string configName = configPath ?? "tokenizer_config.json";
        BosTokenId = ResolveConfigToken(config.BosToken, "bos_token", configName);
        EosTokenId = ResolveConfigToken(config.EosToken, "eos_token", configName);
        PadTokenId = ResolveConfigToken(config.PadToken, "pad_token", configName);
        BosToken = config.BosToken;
        EosToken = config.EosToken;
        ChatTemplate = ChatTemplate.FromTokenizerConfig(config, config.ChatTemplateSource ?? configName);
    }

    private static string Describe(TokenizerFile file)
    {
        if (file.Bpe.ByteLevel)
        {
            string name = file.PreTokenizerName;
            string style = name is "Llama-3" or "Qwen2" or "GPT-2" ? name + " style" : name;
            return $"byte-level BPE ({style}{(file.Bpe.IgnoreMerges ? ", ignore_merges" : "")}{(file.Normalizer.HasNfc ? ", NFC" : "")})";
        }
        var details = new List<string>();
        if (!file.Normalizer.IsNone) details.Add(file.Normalizer.ToString());
        if (file.PreTokenizer != PreTokenizer.None) details.Add(file.PreTokenizerName);
        if (file.Bpe.ByteFallback) details.Add("byte fallback");
        if (file.RebuiltAs is not null) details.Add(file.RebuiltAs);
        return $"SentencePiece-style BPE ({string.Join(", ", details)})";
    }

    /// <summary>
    /// Loads tokenizer.json and, when given, tokenizer_config.json (special-token names, chat template, and the fields
    /// by which transformers rebuilds the pipeline: <see cref="TransformersTokenizerClass"/>). With the config, Encode
    /// gives transformers' ids (AutoTokenizer); without it, those of tokenizer.json alone (the tokenizers library).
    /// Throws <see cref="ApbException"/> for a missing file, bad JSON, or a tokenizer shape we do not implement
    /// (the message names the field and what is supported).
    /// </summary>
    public static HfTokenizer Load(string tokenizerJsonPath, string? tokenizerConfigJsonPath = null)
    {
        var file = TokenizerFile.Read(tokenizerJsonPath);
        var config = tokenizerConfigJsonPath is null ? TokenizerConfig.Empty : TokenizerConfig.Read(tokenizerConfigJsonPath);
        return new HfTokenizer(TransformersTokenizerClass.Apply(file, config), config, tokenizerConfigJsonPath);
    }

    /// <summary>Largest id + 1, added tokens included.</summary>
    public int VocabSize { get; }

    /// <summary>A one-line description, e.g. "byte-level BPE (Llama-3 style, ignore_merges), 128256 tokens, 256 special".</summary>
    public string Kind { get; }

    public int? BosTokenId { get; }
    public int? EosTokenId { get; }
    public int? PadTokenId { get; }

    /// <summary>tokenizer_config.json's bos_token / eos_token text (chat templates read them), or null.</summary>
    public string? BosToken { get; }
    public string? EosToken { get; }

    /// <summary>The chat template of tokenizer_config.json or chat_template.jinja; plain without one.</summary>
    public ChatTemplate ChatTemplate { get; private set; }

    /// <summary>This tokenizer with another chat template (the CLI's --chat-template); the two share everything else.</summary>
    public HfTokenizer WithChatTemplate(ChatTemplate template)
    {
        ArgumentNullException.ThrowIfNull(template);
        var copy = (HfTokenizer)MemberwiseClone();
        copy.ChatTemplate = template;
        return copy;
    }

    internal DecodeTable Decoding { get; }

    /// <summary>
    /// The ids HF's <c>tokenizer(text)["input_ids"]</c> gives: added and special tokens written in the text are
    /// recognised as such either way; <paramref name="addSpecialTokens"/> only decides whether the post-processor
    /// (e.g. Llama-3.1's BOS) is applied. Text rendered by a chat template already holds its BOS: encode it with
    /// <see cref="ChatTemplate.EncodeWithSpecialTokens"/>.
    /// </summary>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true) => Encode(text, addSpecialTokens, int.MaxValue);

    /// <summary>
    /// As <see cref="Encode(string, bool)"/>, but stops merging once more than <paramref name="maxTokens"/> ids are out:
    /// the result then holds more than <paramref name="maxTokens"/> ids, the start of the whole encoding. A text far too
    /// long for a context costs BPE work in proportion to the limit, not to the text.
    /// </summary>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens, int maxTokens)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = WithoutLoneSurrogates(text);
        var ids = new List<int>(Math.Min(text.Length / 3, maxTokens) + 8);
        var pieces = new List<Piece>();
        if (_rawMatcher is null) EncodeNormalizing(text, atTextStart: true, ids, pieces, maxTokens);
        else
        {
            var segments = new List<TextSegment>();
            _rawMatcher.Split(text, segments);
            foreach (var s in segments)
            {
                if (ids.Count > maxTokens) break;
                if (s.Token is not null) ids.Add(s.Token.Id);
                else EncodeNormalizing(text.Substring(s.Start, s.Length), s.Start == 0, ids, pieces, maxTokens);
            }
        }
        return (addSpecialTokens ? _post.Apply(ids) : ids).ToArray();
    }

    private void EncodeNormalizing(string text, bool atTextStart, List<int> ids, List<Piece> pieces, int maxTokens)
    {
        text = _normalizer.Normalize(text);
        if (_normalizedMatcher is null)
        {
            EncodeText(text, atTextStart, ids, pieces, maxTokens);
            return;
        }
        var segments = new List<TextSegment>();
        _normalizedMatcher.Split(text, segments);
        foreach (var s in segments)
        {
            if (ids.Count > maxTokens) return;
            if (s.Token is not null) ids.Add(s.Token.Id);
            else EncodeText(text.Substring(s.Start, s.Length), atTextStart && s.Start == 0, ids, pieces, maxTokens);
        }
    }

    private void EncodeText(string text, bool atTextStart, List<int> ids, List<Piece> pieces, int maxTokens)
    {
        _preTokenizer.Split(text, atTextStart, pieces, _model.EveryPieceHasAnId ? maxTokens - ids.Count : int.MaxValue);
        foreach (var piece in pieces)
        {
            if (ids.Count > maxTokens) return;
            _model.Tokenize(piece.Span, ids);
        }
    }

    // HF receives Rust strings, which cannot hold an unpaired surrogate; UTF-8 encoding would turn one into U+FFFD.
    private static string WithoutLoneSurrogates(string text)
    {
        int i = text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF');
        if (i < 0) return text;
        StringBuilder? sb = null;
        for (; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            if (!char.IsSurrogate(c)) continue;
            sb ??= new StringBuilder(text);
            sb[i] = '\uFFFD';
        }
        return sb?.ToString() ?? text;
    }

    /// <summary>
    /// Text for <paramref name="ids"/> as HF's <c>decode</c> gives it (the tokenizer.json decoder: byte-level tokens'
    /// bytes read as UTF-8 with U+FFFD for invalid sequences; SentencePiece's "▁" as spaces, &lt;0xNN&gt; runs as
    /// UTF-8, the leading space stripped where the file says so); unknown ids are skipped, special ones too when
    /// <paramref name="skipSpecialTokens"/>. No clean-up of spaces before punctuation (transformers' optional
    /// clean_up_tokenization_spaces is not applied: it would break Decode(Encode(s)) == s).
    /// </summary>
    public string Decode(IReadOnlyList<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        return Decoding.Decode(ids, skipSpecialTokens);
    }

    /// <summary>
    /// The bytes token <paramref name="id"/> stands for in decoded text (may be part of a UTF-8 character): a byte-level
    /// token's alphabet mapped back to bytes, a &lt;0xNN&gt; token's byte, otherwise the UTF-8 of the token's text with
    /// SentencePiece's "▁" as a space; for added tokens the UTF-8 of their text.
    /// </summary>
    public byte[] TokenBytes(int id)
    {
        if ((uint)id >= (uint)VocabSize || _idToToken[id] is null)
            throw new ArgumentOutOfRangeException(nameof(id), id,
                $"token id {id} is not in this tokenizer (ids 0..{VocabSize - 1}, {Kind})");
        return Decoding.Bytes(id).ToArray();
    }

    /// <summary>True for added tokens marked special (BOS, EOS, &lt;|eot_id|&gt;, &lt;|im_start|&gt;, ...).</summary>
    public bool IsSpecial(int id) => (uint)id < (uint)VocabSize && _special[id];

    /// <summary>The id of a token written as in the vocabulary (byte-level form, e.g. "Ġthe") or an added token's text.</summary>
    public int? TokenToId(string token) =>
        _addedByContent.TryGetValue(token, out int id) ? id : _model.TokenToId(token);

    /// <summary>The token as the vocabulary writes it (byte-level form, e.g. "Ġthe"), or an added token's text.</summary>
    public string? IdToToken(int id) => (uint)id < (uint)VocabSize ? _idToToken[id] : null;

    public override string ToString() => Kind;

    private int? ResolveConfigToken(string? token, string field, string configName)
    {
        if (token is null) return null;
        return TokenToId(token) ?? throw new ApbException(
            $"{configName}: {field} is \"{token}\", but tokenizer.json has no such token (neither in model.vocab nor " +
            "in added_tokens). The two files do not belong to the same model; use the pair from one model repository.");
    }
}
