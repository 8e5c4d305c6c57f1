using System.Text.Json;
using System.Text.RegularExpressions;

namespace Apb.Tokenization;

/// <summary>
/// What tokenizer.json says, read with <see cref="JsonDocument"/> (AOT-clean) and checked against the shapes we
/// implement: byte-level BPE (Llama-3, Qwen, GPT-2 style) and SentencePiece-style BPE with byte fallback (Llama-2,
/// Mistral, Yi). Anything else is refused with the field, what we support and what was found.
/// </summary>
internal sealed record TokenizerFile
{
    public required Dictionary<string, int> Vocab { get; init; }
    public required Dictionary<long, (int Rank, int NewId)> Merges { get; init; }
    public required BpeOptions Bpe { get; init; }
    public required List<AddedToken> AddedTokens { get; init; }
    public required Normalizer Normalizer { get; init; }
    public required PreTokenizer PreTokenizer { get; init; }
    /// <summary>"Llama-3 style", "Metaspace(▁, prepend first)", ... for <see cref="HfTokenizer.Kind"/>.</summary>
    public required string PreTokenizerName { get; init; }
    public required TokenDecoder Decoder { get; init; }
    public required PostProcessor PostProcessor { get; init; }
    /// <summary>How transformers rebuilt the file's pipeline (e.g. "as transformers' LlamaTokenizer, legacy"), or null.</summary>
    public string? RebuiltAs { get; init; }

    /// <summary>The id of an added token's content or of a vocabulary token, as HF's token_to_id looks it up.</summary>
    public int? IdOf(string token)
    {
        foreach (var t in AddedTokens)
            if (t.Content == token) return t.Id;
        return Vocab.TryGetValue(token, out int id) ? id : null;
    }

    // Far above any real vocabulary (the largest are ~260K); ids index dense tables.
    private const int MaxId = 1 << 24;

    // Real files are at most tens of megabytes (a 260K vocabulary with its merges); more is the wrong file or a device
    // such as /dev/zero.
    private const long MaxBytes = 128L << 20;
    private const string What = "Hugging Face tokenizer.json";

    private const string OtherKind =
        "This tokenizer is of a kind Apb does not implement; use a checkpoint from the Llama-2/3, Mistral, Yi or Qwen families.";

    private const string Supported =
        "supported: byte-level BPE as Llama-3, Qwen2/2.5/3 and GPT-2-style ByteLevelBPETokenizer write it, and " +
        "SentencePiece-style BPE with byte fallback as Llama-2, Mistral and Yi write it";

    public static TokenizerFile Read(string path)
    {
        if (!File.Exists(path))
            throw new ApbException(
                $"tokenizer file '{path}' does not exist: expected the model's Hugging Face tokenizer.json there. " +
                "Check the path, or download tokenizer.json from the model repository.");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(Utf8File.ReadBytes(path, What, MaxBytes), new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new ApbException(
                $"tokenizer file '{path}' is not valid JSON ({e.Message}): expected a Hugging Face tokenizer.json. " +
                "The file is probably truncated or not a tokenizer file; download it again.", e);
        }
        using (doc)
        {
            var reader = new FieldReader(path);
            try
            {
                return reader.ReadRoot(doc.RootElement);
            }
            catch (InvalidOperationException e)
            {
                throw Utf8File.InvalidEscape(path, What, e);
            }
        }
    }

    private sealed class FieldReader(string path)
    {
        private ApbException Error(string field, string expected, string found, string todo = "") =>
            new($"{path}: {field} is {found}; expected {expected}." + (todo.Length > 0 ? " " + todo : ""));

        private static string Describe(JsonElement e) => e.ValueKind switch
        {
            JsonValueKind.String => $"\"{Truncate(e.GetString()!)}\"",
            JsonValueKind.Object when e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String =>
                $"of type \"{t.GetString()}\"",
            JsonValueKind.Undefined => "missing",
            _ => $"{e.ValueKind.ToString().ToLowerInvariant()} {Truncate(e.GetRawText())}",
        };

        private static string Truncate(string s) => s.Length <= 120 ? s : s[..120] + "...";

        private static JsonElement Get(JsonElement obj, string name) =>
            obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var v) ? v : default;

        private static string? TypeOf(JsonElement obj) =>
            Get(obj, "type") is { ValueKind: JsonValueKind.String } t ? t.GetString() : null;

        private bool Bool(JsonElement obj, string name, string field, bool fallback)
        {
            var v = Get(obj, name);
            return v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                JsonValueKind.Undefined or JsonValueKind.Null => fallback,
                _ => throw Error($"{field}.{name}", "true or false", Describe(v)),
            };
        }

        public TokenizerFile ReadRoot(JsonElement root)
        {
            if (root.ValueKind != JsonValueKind.Object)
                throw Error("the top level", "a JSON object with \"model\", \"pre_tokenizer\", ...", Describe(root),
                    "This does not look like a Hugging Face tokenizer.json.");
            var model = Get(root, "model");
            if (model.ValueKind != JsonValueKind.Object)
                throw Error("\"model\"", "an object describing the BPE model", Describe(model),
                    "This does not look like a Hugging Face tokenizer.json.");

            string? modelType = TypeOf(model);
            if (modelType is null && Get(model, "merges").ValueKind == JsonValueKind.Undefined || modelType is not (null or "BPE"))
                throw Error("model.type", "\"BPE\" (" + Supported + ")",
                    modelType is null ? "missing (and there are no merges)" : $"\"{modelType}\"",
                    "WordPiece (BERT), Unigram (T5, SentencePiece) and WordLevel tokenizers are not supported.");
            var dropout = Get(model, "dropout");
            if (dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() != 0)
                throw Error("model.dropout", "null (deterministic encoding)", Describe(dropout));
            foreach (var affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            {
                var v = Get(model, affix);
                if (v.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.Null)
                    && !(v.ValueKind == JsonValueKind.String && v.GetString() == ""))
                    throw Error($"model.{affix}", "null or \"\" (" + Supported + ")", Describe(v));
            }

            var vocab = ReadVocab(model);
            var merges = ReadMerges(model, vocab);
            int? unkId = null;
            if (Get(model, "unk_token") is { ValueKind: JsonValueKind.String } unk)
                unkId = vocab.TryGetValue(unk.GetString()!, out int u) ? u : null;

            var added = ReadAddedTokens(root);
            var normalizer = ReadNormalizer(Get(root, "normalizer"));
            var (preTokenizer, preTokenizerName, byteLevel) = ReadPreTokenizer(Get(root, "pre_tokenizer"));
            bool byteFallback = Bool(model, "byte_fallback", "model", false);
            if (byteLevel && byteFallback)
                throw Error("model.byte_fallback", "false with a ByteLevel pre-tokenizer (" + Supported + ")", "true",
                    "Byte-level BPE has a token for every byte already.");
            var decoder = byteLevel ? ReadByteLevelDecoder(Get(root, "decoder")) : ReadSentencePieceDecoder(Get(root, "decoder"));
            var post = ReadPostProcessor(Get(root, "post_processor"));

            return new TokenizerFile
            {
                Vocab = vocab,
                Merges = merges,
                Bpe = new BpeOptions(byteLevel, byteFallback, unkId, Bool(model, "fuse_unk", "model", false),
                    Bool(model, "ignore_merges", "model", false)),
                AddedTokens = added,
                Normalizer = normalizer,
                PreTokenizer = preTokenizer,
                PreTokenizerName = preTokenizerName,
                Decoder = decoder,
                PostProcessor = post,
            };
        }

        private Dictionary<string, int> ReadVocab(JsonElement model)
        {
            var v = Get(model, "vocab");
            if (v.ValueKind != JsonValueKind.Object)
                throw Error("model.vocab", "an object mapping token strings to ids", Describe(v));
            var vocab = new Dictionary<string, int>(200_000, StringComparer.Ordinal);
            foreach (var p in v.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0 || id >= MaxId)
                    throw Error($"model.vocab[\"{Truncate(p.Name)}\"]", $"an integer id in 0..{MaxId - 1}", Describe(p.Value));
                vocab[p.Name] = id;
            }
            return vocab;
        }

        private Dictionary<long, (int Rank, int NewId)> ReadMerges(JsonElement model, Dictionary<string, int> vocab)
        {
            var m = Get(model, "merges");
            if (m.ValueKind != JsonValueKind.Array)
                throw Error("model.merges", "an array of merges (\"a b\" strings or [a, b] pairs)", Describe(m));
            var merges = new Dictionary<long, (int, int)>(m.GetArrayLength());
            int rank = 0;
            foreach (var entry in m.EnumerateArray())
            {
                string? a = null, b = null;
                if (entry.ValueKind == JsonValueKind.String)
                {
                    var parts = entry.GetString()!.Split(' ');
                    if (parts.Length == 2) (a, b) = (parts[0], parts[1]);
                }
                else if (entry.ValueKind == JsonValueKind.Array && entry.GetArrayLength() == 2
                         && entry[0].ValueKind == JsonValueKind.String && entry[1].ValueKind == JsonValueKind.String)
                    (a, b) = (entry[0].GetString(), entry[1].GetString());
                if (a is null || b is null)
                    throw Error($"model.merges[{rank}]", "\"a b\" or [\"a\", \"b\"]", Describe(entry));
                if (!vocab.TryGetValue(a, out int aId) || !vocab.TryGetValue(b, out int bId)
                    || !vocab.TryGetValue(a + b, out int newId))
                    throw Error($"model.merges[{rank}]", "a merge of two vocabulary tokens into a vocabulary token",
                        $"{Describe(entry)}, which uses a token missing from model.vocab",
                        "The vocabulary and merges do not belong together; download tokenizer.json again.");
                // A repeated pair keeps its last rank, as HF's map insert does.
                merges[BytePairModel.PairKey(aId, bId)] = (rank, newId);
                rank++;
            }
            return merges;
        }

        private List<AddedToken> ReadAddedTokens(JsonElement root)
        {
            var list = new List<AddedToken>();
            var a = Get(root, "added_tokens");
            if (a.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return list;
            if (a.ValueKind != JsonValueKind.Array)
                throw Error("added_tokens", "an array of {id, content, special, ...}", Describe(a));
            int i = 0;
            foreach (var t in a.EnumerateArray())
            {
                string field = $"added_tokens[{i++}]";
                var id = Get(t, "id");
                var content = Get(t, "content");
                if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out int idValue) || idValue < 0 || idValue >= MaxId
                    || content.ValueKind != JsonValueKind.String)
                    throw Error(field, $"an object with an \"id\" in 0..{MaxId - 1} and a string \"content\"", Describe(t));
                if (content.GetString()!.Length == 0) continue; // HF ignores empty added tokens
                list.Add(new AddedToken(idValue, content.GetString()!,
                    Special: Bool(t, "special", field, false),
                    Normalized: Bool(t, "normalized", field, true),
                    SingleWord: Bool(t, "single_word", field, false),
                    LStrip: Bool(t, "lstrip", field, false),
                    RStrip: Bool(t, "rstrip", field, false)));
            }
            return list;
        }

        private Normalizer ReadNormalizer(JsonElement n)
        {
            if (n.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return Normalizer.None;
            var steps = new List<Normalizer.Step>();
            if (TypeOf(n) == "Sequence" && Get(n, "normalizers") is { ValueKind: JsonValueKind.Array } items)
            {
                int i = 0;
                foreach (var item in items.EnumerateArray()) steps.Add(ReadNormalizerStep(item, $"normalizer.normalizers[{i++}]"));
            }
            else steps.Add(ReadNormalizerStep(n, "normalizer"));
            return new Normalizer(steps);
        }

        private Normalizer.Step ReadNormalizerStep(JsonElement n, string field)
        {
            const string expected = "NFC, Prepend, Replace (a String pattern) or a Sequence of them";
            switch (TypeOf(n))
            {
                case "NFC":
                    return new Normalizer.NfcStep();
                case "Prepend" when Get(n, "prepend") is { ValueKind: JsonValueKind.String } prepend:
                    return new Normalizer.PrependStep(prepend.GetString()!);
                case "Replace":
                    var (from, to) = ReadReplacePair(n, field, "normalizer");
                    return new Normalizer.ReplaceStep(from, to);
                case "NFKC" or "NFKD" or "NFD":
                    throw Error(field, expected, Describe(n),
                        "Only NFC is implemented (the product runs without ICU); no supported model family uses the others.");
                default:
                    throw Error(field, expected + " (" + Supported + ")", Describe(n), OtherKind);
            }
        }

        // {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}
        private (string From, string To) ReadReplacePair(JsonElement n, string field, string where)
        {
            var pattern = Get(n, "pattern");
            if (Get(pattern, "String") is not { ValueKind: JsonValueKind.String } literal || literal.GetString()!.Length == 0)
                throw Error($"{field}.pattern", "{\"String\": \"...\"} (a literal; Regex patterns in the " + where +
                                                " are not implemented)", Describe(pattern));
            if (Get(n, "content") is not { ValueKind: JsonValueKind.String } content)
                throw Error($"{field}.content", "a string", Describe(Get(n, "content")));
            return (literal.GetString()!, content.GetString()!);
        }

        private (PreTokenizer PreTokenizer, string Name, bool ByteLevel) ReadPreTokenizer(JsonElement p)
        {
            if (p.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null)
                return (PreTokenizer.None, "no pre-tokenizer", false);
            var metaspace = TypeOf(p) == "Metaspace" ? p
                : TypeOf(p) == "Sequence" && Get(p, "pretokenizers") is { ValueKind: JsonValueKind.Array } items
                  && items.GetArrayLength() == 1 && TypeOf(items[0]) == "Metaspace" ? items[0] : default;
            if (metaspace.ValueKind == JsonValueKind.Object)
            {
                var m = ReadMetaspace(metaspace, "pre_tokenizer");
                return (m, m.ToString(), false);
            }
            var (splits, prefixSpace, byteLevelRegex, name) = ReadByteLevelPreTokenizer(p);
            return (new ByteLevelPreTokenizer(splits, prefixSpace, byteLevelRegex), name, true);
        }

        // {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}; files written before
        // prepend_scheme existed say add_prefix_space (true: always, false: never).
        private MetaspacePreTokenizer ReadMetaspace(JsonElement m, string field)
        {
            char replacement = ReadReplacement(m, field);
            PrependScheme scheme;
            var s = Get(m, "prepend_scheme");
            if (s.ValueKind == JsonValueKind.String)
                scheme = s.GetString() switch
                {
                    "always" => PrependScheme.Always,
                    "first" => PrependScheme.First,
                    "never" => PrependScheme.Never,
                    _ => throw Error($"{field}.prepend_scheme", "\"always\", \"first\" or \"never\"", Describe(s)),
                };
            else scheme = Bool(m, "add_prefix_space", field, true) ? PrependScheme.Always : PrependScheme.Never;
            return new MetaspacePreTokenizer(replacement, scheme, Bool(m, "split", field, true));
        }

        private char ReadReplacement(JsonElement m, string field)
        {
            var r = Get(m, "replacement");
            if (r.ValueKind != JsonValueKind.String || r.GetString()!.Length != 1)
                throw Error($"{field}.replacement", "one character (\"▁\")", Describe(r));
            return r.GetString()![0];
        }

        private (Regex[] Splits, bool AddPrefixSpace, Regex? ByteLevelRegex, string Name) ReadByteLevelPreTokenizer(JsonElement p)
        {
            const string expected = "Sequence[Split(Regex, behavior \"Isolated\"), ByteLevel(use_regex=false)] " +
                                    "(Llama-3, Qwen) or ByteLevel(use_regex=true) (GPT-2 style)";
            var steps = new List<JsonElement>();
            if (TypeOf(p) == "Sequence" && Get(p, "pretokenizers") is { ValueKind: JsonValueKind.Array } items)
                steps.AddRange(items.EnumerateArray());
            else if (p.ValueKind == JsonValueKind.Object) steps.Add(p);
            else throw Error("pre_tokenizer", expected, Describe(p), "A byte-level BPE needs a ByteLevel pre-tokenizer.");

            var splits = new List<Regex>();
            var names = new List<string>();
            bool prefixSpace = false, sawByteLevel = false;
            Regex? byteLevelRegex = null;
            for (int i = 0; i < steps.Count; i++)
            {
                var step = steps[i];
                string field = steps.Count == 1 ? "pre_tokenizer" : $"pre_tokenizer.pretokenizers[{i}]";
                if (sawByteLevel)
                    throw Error(field, "nothing after the ByteLevel step (" + expected + ")", Describe(step));
                switch (TypeOf(step))
                {
                    case "Split":
                        if (Get(step, "behavior") is var behavior && behavior.ValueKind == JsonValueKind.String
                            && behavior.GetString() != "Isolated")
                            throw Error($"{field}.behavior", "\"Isolated\" (" + expected + ")", Describe(behavior));
                        if (Bool(step, "invert", field, false))
                            throw Error($"{field}.invert", "false (" + expected + ")", "true");
                        var pattern = Get(step, "pattern");
                        if (Get(pattern, "Regex") is { ValueKind: JsonValueKind.String } regex)
                        {
                            splits.Add(PreTokenizerRegex.Create(regex.GetString()!, $"{path}: {field}.pattern.Regex"));
                            names.Add(PreTokenizerRegex.KnownName(regex.GetString()!) ?? "custom regex");
                        }
                        else if (Get(pattern, "String") is { ValueKind: JsonValueKind.String } literal)
                        {
                            splits.Add(new Regex(Regex.Escape(literal.GetString()!), RegexOptions.CultureInvariant));
                            names.Add("string split");
                        }
                        else throw Error($"{field}.pattern", "{\"Regex\": \"...\"} or {\"String\": \"...\"}", Describe(pattern));
                        break;
                    case "ByteLevel":
                        sawByteLevel = true;
                        prefixSpace = Bool(step, "add_prefix_space", field, true);
                        if (Bool(step, "use_regex", field, true))
                        {
                            byteLevelRegex = PreTokenizerRegex.Gpt2Pattern;
                            names.Add("GPT-2");
                        }
                        break;
                    default:
                        throw Error(field, expected, Describe(step), OtherKind);
                }
            }
            if (!sawByteLevel)
                throw Error("pre_tokenizer", expected, "without a ByteLevel step",
                    "Byte-level BPE needs ByteLevel as its last pre-tokenizer.");
            string name = names.Count == 0 ? "no regex" : string.Join(" + ", names.Distinct());
            return (splits.ToArray(), prefixSpace, byteLevelRegex, name);
        }

        private TokenDecoder ReadByteLevelDecoder(JsonElement d)
        {
            if (TypeOf(d) == "ByteLevel") return TokenDecoder.ByteLevelDecoder;
            if (TypeOf(d) == "Sequence" && Get(d, "decoders") is { ValueKind: JsonValueKind.Array } items
                && items.GetArrayLength() == 1 && TypeOf(items[0]) == "ByteLevel")
                return TokenDecoder.ByteLevelDecoder;
            throw Error("decoder", "{\"type\": \"ByteLevel\"} (the decoder of a byte-level BPE)", Describe(d), OtherKind);
        }

        // Per-token steps (Replace, Metaspace), then ByteFallback, Fuse, Strip: the order SentencePiece converters write,
        // and the one in which Strip sees the whole text.
        private TokenDecoder ReadSentencePieceDecoder(JsonElement d)
        {
            const string expected = "Replace, ByteFallback, Fuse, Strip (in that order) or Metaspace: the decoder of a " +
                                    "SentencePiece-style BPE (Llama-2: Sequence[Replace(▁→ ), ByteFallback, Fuse, Strip])";
            var steps = new List<(JsonElement Step, string Field)>();
            if (TypeOf(d) == "Sequence" && Get(d, "decoders") is { ValueKind: JsonValueKind.Array } items)
            {
                int i = 0;
                foreach (var item in items.EnumerateArray()) steps.Add((item, $"decoder.decoders[{i++}]"));
            }
            else if (d.ValueKind == JsonValueKind.Object) steps.Add((d, "decoder"));
            else throw Error("decoder", expected, Describe(d));

            var replacements = new List<(string, string)>();
            char? metaspace = null;
            bool dropsInFirst = false, byteFallback = false, fuse = false;
            int stripStart = 0, stage = 0; // 0: per-token steps, 1: after ByteFallback, 2: after Fuse, 3: after Strip
            char stripContent = ' ';
            foreach (var (step, field) in steps)
            {
                string? type = TypeOf(step);
                int stepStage = type switch { "Replace" or "Metaspace" => 0, "ByteFallback" => 1, "Fuse" => 2, "Strip" => 3, _ => -1 };
                if (stepStage < 0) throw Error(field, expected, Describe(step), OtherKind);
                if (stepStage < stage || (stepStage == stage && stage > 0))
                    throw Error(field, expected, $"{Describe(step)} out of that order");
                stage = stepStage;
                switch (type)
                {
                    case "Replace":
                        replacements.Add(ReadReplacePair(step, field, "decoder"));
                        break;
                    case "Metaspace":
                        if (metaspace is not null) throw Error(field, expected, "a second Metaspace step");
                        var m = ReadMetaspace(step, field);
                        metaspace = m.Replacement;
                        dropsInFirst = Get(step, "prepend_scheme") is { ValueKind: JsonValueKind.String } s
                            ? s.GetString() != "never"
                            : Bool(step, "add_prefix_space", field, true);
                        break;
                    case "ByteFallback": byteFallback = true; break;
                    case "Fuse": fuse = true; break;
                    case "Strip":
                        if (Get(step, "content") is not { ValueKind: JsonValueKind.String } content || content.GetString()!.Length != 1)
                            throw Error($"{field}.content", "one character", Describe(Get(step, "content")));
                        stripContent = content.GetString()![0];
                        stripStart = Int(step, "start", field);
                        if (Int(step, "stop", field) != 0)
                            throw Error($"{field}.stop", "0 (no known tokenizer strips the end)", Describe(Get(step, "stop")));
                        if (!fuse)
                            throw Error(field, expected, "Strip without a Fuse before it (it would strip every token)");
                        break;
                }
            }
            if (metaspace is not null && replacements.Count > 0)
                throw Error("decoder", expected, "both Replace and Metaspace steps");
            return new TokenDecoder
            {
                Replacements = replacements,
                MetaspaceReplacement = metaspace,
                MetaspaceDropsInFirstToken = dropsInFirst,
                ByteFallback = byteFallback,
                StripContent = stripContent,
                StripStart = stripStart,
            };
        }

        private int Int(JsonElement obj, string name, string field)
        {
            var v = Get(obj, name);
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int value) || value < 0)
                throw Error($"{field}.{name}", "a non-negative integer", Describe(v));
            return value;
        }

        private PostProcessor ReadPostProcessor(JsonElement p)
        {
            const string expected = "null, ByteLevel, TemplateProcessing or a Sequence of them";
            if (p.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return PostProcessor.None;
            switch (TypeOf(p))
            {
                case "ByteLevel":
                    return PostProcessor.None;
                case "TemplateProcessing":
                    return ReadTemplate(p, "post_processor");
                case "Sequence" when Get(p, "processors") is { ValueKind: JsonValueKind.Array } items:
                    var result = PostProcessor.None;
                    int i = 0;
                    foreach (var item in items.EnumerateArray())
                    {
                        string field = $"post_processor.processors[{i++}]";
                        switch (TypeOf(item))
                        {
                            case "ByteLevel": break;
                            case "TemplateProcessing":
                                if (result.AddsTokens) throw Error(field, "at most one TemplateProcessing", Describe(item));
                                result = ReadTemplate(item, field);
                                break;
                            default: throw Error(field, expected, Describe(item), OtherKind);
                        }
                    }
                    return result;
                default:
                    throw Error("post_processor", expected, Describe(p), OtherKind);
            }
        }

        private PostProcessor ReadTemplate(JsonElement t, string field)
        {
            var single = Get(t, "single");
            if (single.ValueKind != JsonValueKind.Array)
                throw Error($"{field}.single", "an array of {\"SpecialToken\": ...} / {\"Sequence\": ...} items", Describe(single));
            var specials = Get(t, "special_tokens");
            var before = new List<int>();
            var after = new List<int>();
            bool sawSequence = false;
            int i = 0;
            foreach (var item in single.EnumerateArray())
            {
                string itemField = $"{field}.single[{i++}]";
                if (Get(item, "Sequence") is { ValueKind: JsonValueKind.Object } seq)
                {
                    if (sawSequence || Get(seq, "id") is not { ValueKind: JsonValueKind.String } seqId || seqId.GetString() != "A")
                        throw Error(itemField, "one {\"Sequence\": {\"id\": \"A\"}} in the single template", Describe(item));
                    sawSequence = true;
                }
                else if (Get(item, "SpecialToken") is { ValueKind: JsonValueKind.Object } special
                         && Get(special, "id") is { ValueKind: JsonValueKind.String } name)
                {
                    var entry = Get(specials, name.GetString()!);
                    var ids = Get(entry, "ids");
                    if (ids.ValueKind != JsonValueKind.Array)
                        throw Error($"{field}.special_tokens[\"{name.GetString()}\"].ids", "an array of token ids",
                            Describe(ids), "The template names a special token the file does not define.");
                    foreach (var id in ids.EnumerateArray())
                    {
                        if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out int value) || value < 0)
                            throw Error($"{field}.special_tokens[\"{name.GetString()}\"].ids[]", "a token id", Describe(id));
                        (sawSequence ? after : before).Add(value);
                    }
                }
                else throw Error(itemField, "{\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": {\"id\": \"A\"}}", Describe(item));
            }
            if (!sawSequence)
                throw Error($"{field}.single", "a template containing {\"Sequence\": {\"id\": \"A\"}}", "a template without it");
            return new PostProcessor(before.ToArray(), after.ToArray());
        }
    }
}
