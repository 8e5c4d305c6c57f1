namespace Apb.Tokenization;

/// <summary>
/// What transformers 5's AutoTokenizer makes of tokenizer.json beyond the file itself, decided by tokenizer_config.json.
/// The product encodes as transformers does (tokenizer(text), apply_chat_template), so these rules are applied when a
/// tokenizer is loaded with its config; without a config the file is used as written, as the tokenizers library does.
/// <para>
/// 1. LlamaTokenizer (tokenizer_class "LlamaTokenizer", or "LlamaTokenizerFast", which 5.x makes an alias of it: the
/// Llama-2, Mistral and Yi configs) has a constructor of its own, so transformers takes only the vocabulary, the merges
/// and the post-processor from tokenizer.json and builds the rest as that constructor says: no normalizer; a
/// Metaspace("▁", split=false) pre-tokenizer whose prepend scheme is "never" when add_prefix_space is false, else
/// "always" when legacy is true and "first" otherwise (legacy false, null or absent: the class defaults to false;
/// add_prefix_space null or absent: true); BPE with byte fallback and fused unknowns; the decoder Replace("▁" → " "),
/// ByteFallback, Fuse, and Strip of one leading space when add_prefix_space. The file's own normalizer (the legacy
/// conversion's Prepend("▁") + Replace(" " → "▁")) therefore never runs: "&lt;s&gt; [INST]" gives
/// &lt;s&gt; "▁[" rather than &lt;s&gt; "▁" "▁[", and Yi's text gets the "▁" its file never prepends.
/// (transformers: models/llama/tokenization_llama.py, LlamaTokenizer.__init__; tokenization_utils_base's
/// _get_prepend_scheme; tokenization_utils_tokenizers.py, TokenizersBackend.convert_to_native_format.)
/// </para>
/// <para>
/// add_bos_token / add_eos_token in the config change nothing: transformers 5.17 keeps the file's post-processor
/// whatever they say (tests/fixtures/chat_templates/hf_tokenizer_classes.json, made by transformers itself: Llama-2
/// with add_bos_token false and add_eos_token true still gets &lt;s&gt; first and no &lt;/s&gt;; Yi with add_bos_token
/// true still gets none), so neither do we.
/// </para>
/// The LlamaTokenizer rule is applied to SentencePiece-style files only: a byte-level file under tokenizer_class LlamaTokenizerFast
/// (DeepSeek-V3 and some Llama-3 fine-tunes name it) has no "▁" words for a Metaspace pipeline to find, and
/// transformers itself loads the known such families from the file as written (its
/// MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS, by config.json's model_type); so do we. The file's unk token stays; with
/// all 256 &lt;0xNN&gt; tokens present, as in every real file, it is never used. Other classes are used as the file
/// says: for the byte-level families' classes (PreTrainedTokenizerFast, Qwen2Tokenizer) transformers gives the file's
/// ids, as tests/fixtures/chat_templates/hf_rendered.json confirms.
/// <para>
/// Not reproduced: LlamaTokenizer takes its added tokens from tokenizer_config.json (added_tokens_decoder and the named
/// special tokens) and defaults bos/eos/unk to &lt;s&gt;, &lt;/s&gt;, &lt;unk&gt; when the config names none; we keep
/// tokenizer.json's added tokens and the config's names. Real configs repeat the file's added tokens and name their
/// special tokens (the Llama-2 and Yi fixtures do), so the two agree there.
/// </para>
/// </summary>
internal static class TransformersTokenizerClass
{
    private const char Metaspace = '▁';

    public static TokenizerFile Apply(TokenizerFile file, TokenizerConfig config)
    {
        if (config.TokenizerClass is "LlamaTokenizer" or "LlamaTokenizerFast" && !file.Bpe.ByteLevel)
            file = AsLlamaTokenizer(file, config);
        return file;
    }

    private static TokenizerFile AsLlamaTokenizer(TokenizerFile file, TokenizerConfig config)
    {
        bool addPrefixSpace = config.AddPrefixSpace ?? true;
        bool legacy = config.Legacy ?? false;
        var scheme = !addPrefixSpace ? PrependScheme.Never : legacy ? PrependScheme.Always : PrependScheme.First;
        var preTokenizer = new MetaspacePreTokenizer(Metaspace, scheme, split: false);
        return file with
        {
            Normalizer = Normalizer.None,
            PreTokenizer = preTokenizer,
            PreTokenizerName = preTokenizer.ToString(),
            Bpe = file.Bpe with { ByteFallback = true, FuseUnk = true, IgnoreMerges = false },
            Decoder = new TokenDecoder
            {
                Replacements = [(Metaspace.ToString(), " ")],
                ByteFallback = true,
                StripContent = ' ',
                StripStart = addPrefixSpace ? 1 : 0,
            },
            RebuiltAs = $"as transformers' LlamaTokenizer{(legacy ? ", legacy" : "")}",
        };
    }
}
