using System.Text.Json;
using System.Text.RegularExpressions;

namespace Apb.Tokenization;

/// <summary>
/// What tokenizer.json says, read with <see cref="JsonDocument"/> (AOT-clean) and checked against the one shape we
/// implement: byte-level BPE. Anything else is refused with the field, what we support and what was found.
/// </summary>
internal sealed class TokenizerFile
{
    public required Dictionary<string, int> Vocab { get; init; }
    public required Dictionary<long, (int Rank, int NewId)> Merges { get; init; }
    public required bool IgnoreMerges { get; init; }
    public required int? UnkId { get; init; }
    public required List<AddedToken> AddedTokens { get; init; }
    public required bool Nfc { get; init; }
    public required Regex[] Splits { get; init; }
    public required bool AddPrefixSpace { get; init; }
    public required Regex? ByteLevelRegex { get; init; }
    public required string RegexName { get; init; }
    public required PostProcessor PostProcessor { get; init; }

    // Far above any real vocabulary (the largest are ~260K); ids index dense tables.
    private const int MaxId = 1 << 24;

    private const string OtherKind =
        "This tokenizer is of a kind Apb does not implement; use a checkpoint from the Llama-3 or Qwen families.";

    private const string Supported =
        "supported: byte-level BPE tokenizers as Llama-3, Qwen2/2.5/3 and GPT-2-style ByteLevelBPETokenizer write them";

    public static TokenizerFile Read(string path)
    {
        if (!File.Exists(path))
            throw new ApbException(
                $"tokenizer file '{path}' does not exist: expected the model's Hugging Face tokenizer.json there. " +
                "Check the path, or download tokenizer.json from the model repository.");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { MaxDepth = 256 });
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
            return reader.ReadRoot(doc.RootElement);
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
            if (Bool(model, "byte_fallback", "model", false))
                throw Error("model.byte_fallback", "false (" + Supported + ")", "true",
                    "This is a SentencePiece-style BPE (Llama-2, Mistral), which is not supported.");
            var dropout = Get(model, "dropout");
            if (dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() != 0)
                throw Error("model.dropout", "null (deterministic encoding)", Describe(dropout));
            foreach (var affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            {
                var v = Get(model, affix);
                if (v.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.Null)
                    && !(v.ValueKind == JsonValueKind.String && v.GetString() == ""))
                    throw Error($"model.{affix}", "null or \"\" (byte-level BPE)", Describe(v));
            }

            var vocab = ReadVocab(model);
            var merges = ReadMerges(model, vocab);
            int? unkId = null;
            if (Get(model, "unk_token") is { ValueKind: JsonValueKind.String } unk)
                unkId = vocab.TryGetValue(unk.GetString()!, out int u) ? u : null;

            var added = ReadAddedTokens(root);
            bool nfc = ReadNormalizer(Get(root, "normalizer"));
            var (splits, prefixSpace, byteLevelRegex, regexName) = ReadPreTokenizer(Get(root, "pre_tokenizer"));
            ReadDecoder(Get(root, "decoder"));
            var post = ReadPostProcessor(Get(root, "post_processor"));

            return new TokenizerFile
            {
                Vocab = vocab,
                Merges = merges,
                IgnoreMerges = Bool(model, "ignore_merges", "model", false),
                UnkId = unkId,
                AddedTokens = added,
                Nfc = nfc,
                Splits = splits,
                AddPrefixSpace = prefixSpace,
                ByteLevelRegex = byteLevelRegex,
                RegexName = regexName,
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

        private bool ReadNormalizer(JsonElement n)
        {
            if (n.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return false;
            string? type = TypeOf(n);
            if (type == "NFC") return true;
            if (type == "Sequence" && Get(n, "normalizers") is { ValueKind: JsonValueKind.Array } items)
            {
                bool nfc = false;
                foreach (var item in items.EnumerateArray())
                {
                    if (TypeOf(item) != "NFC")
                        throw Error("normalizer.normalizers[]", "\"NFC\" (the only normalizer supported)", Describe(item), OtherKind);
                    nfc = true;
                }
                return nfc;
            }
            throw Error("normalizer", "null or {\"type\": \"NFC\"} (" + Supported + ")", Describe(n), OtherKind);
        }

        private (Regex[] Splits, bool AddPrefixSpace, Regex? ByteLevelRegex, string Name) ReadPreTokenizer(JsonElement p)
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

        private void ReadDecoder(JsonElement d)
        {
            if (TypeOf(d) == "ByteLevel") return;
            if (TypeOf(d) == "Sequence" && Get(d, "decoders") is { ValueKind: JsonValueKind.Array } items
                && items.GetArrayLength() == 1 && TypeOf(items[0]) == "ByteLevel")
                return;
            throw Error("decoder", "{\"type\": \"ByteLevel\"} (" + Supported + ")", Describe(d), OtherKind);
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
