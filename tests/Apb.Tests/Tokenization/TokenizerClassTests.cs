using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit;

namespace Apb.Tests.Tokenization;

/// <summary>
/// The tokenizer_config.json variants of tests/fixtures/chat_templates/tokenizer_class_variants.json (legacy,
/// add_prefix_space, add_bos_token/add_eos_token, tokenizer_class), each loaded once per test run.
/// </summary>
public static class TokenizerClassVariants
{
    public static string SpecPath => Path.Combine(Repo.Root, "tests", "fixtures", "chat_templates", "tokenizer_class_variants.json");

    private static readonly Lazy<JsonObject> s_spec = new(() => JsonNode.Parse(File.ReadAllText(SpecPath))!.AsObject());
    private static readonly Dictionary<string, TokenizerFixtures.Pair> s_loaded = [];

    public static IReadOnlyList<string> Texts => [.. s_spec.Value["texts"]!.AsArray().Select(t => (string)t!)];

    public static TheoryData<string> Names
    {
        get
        {
            var names = new TheoryData<string>();
            foreach (var v in s_spec.Value["variants"]!.AsArray()) names.Add((string)v!["name"]!);
            return names;
        }
    }

    /// <summary>The named variant: ours on the edited config, the oracle on what transformers builds from it.</summary>
    public static TokenizerFixtures.Pair Get(string name)
    {
        lock (s_loaded)
        {
            if (s_loaded.TryGetValue(name, out var pair)) return pair;
            var variants = s_spec.Value["variants"]!.AsArray();
            int index = variants.Select(v => (string)v!["name"]!).ToList().IndexOf(name);
            if (index < 0) throw new ArgumentException($"{SpecPath} has no variant '{name}'");
            var variant = variants[index]!;
            pair = TokenizerFixtures.ConfigVariant((string)variant["tokenizer"]!, $"class-variant-{index}", config =>
            {
                foreach (var (key, value) in variant["set"]!.AsObject()) config[key] = value?.DeepClone();
                foreach (var key in variant["remove"]!.AsArray()) config.Remove((string)key!);
            });
            s_loaded[name] = pair;
            return pair;
        }
    }
}

/// <summary>
/// Every config variant against the Rust tokenizers library on the pipeline transformers builds from it
/// (<see cref="TokenizerFixtures.AsTransformers"/>): the spec's probe texts and random text, encoded with special
/// tokens and decoded skipping them.
/// </summary>
public class TokenizerClassTests
{
    public static TheoryData<string> Names => TokenizerClassVariants.Names;

    [Theory]
    [MemberData(nameof(Names))]
    public void VariantEncodesAndDecodesAsTheTransformersPipeline(string name)
    {
        var t = TokenizerClassVariants.Get(name);
        var random = new RandomText(name.Length * 31 + name[^1]);
        var texts = TokenizerClassVariants.Texts.Concat(Enumerable.Range(0, 200).Select(_ => random.Text()));
        foreach (string text in texts)
        {
            var ours = t.Ours.Encode(text);
            EncodeMatchesHfTests.AssertSameIds(t.Hf.Encode(text), ours, text, name);
            Assert.Equal(t.Hf.Decode(ours.Select(id => (uint)id).ToArray()), t.Ours.Decode(ours, skipSpecialTokens: true));
        }
    }

    [Fact]
    public void ShippedConfigsAreRebuiltAsLlamaTokenizer()
    {
        // The files themselves disagree with transformers after a special token: Llama-2's normalizer prepends "▁" to
        // every stretch, and Yi's prepends none.
        const string text = "<s> [INST] hi [/INST]";
        var llama2 = TokenizerClassVariants.Get("llama2 as shipped (LlamaTokenizer, legacy true)").Ours;
        Assert.Equal([1, 1, 733, 16289, 28793, 12014, 733, 28748, 16289, 28793], llama2.Encode(text));
        Assert.Equal([1, 1, 28705, 733, 16289, 28793, 12014, 733, 28748, 16289, 28793], TokenizerFixtures.Get("llama2-file").Ours.Encode(text));
        Assert.Contains("as transformers' LlamaTokenizer, legacy", llama2.Kind);
        Assert.DoesNotContain("LlamaTokenizer", TokenizerClassVariants.Get("llama2 PreTrainedTokenizerFast (the file as written)").Ours.Kind);
    }
}

/// <summary>Skips a test, saying why, while the transformers-recorded tokenizer class fixture has not been made.</summary>
public sealed class HfTokenizerClassesFactAttribute : FactAttribute
{
    public HfTokenizerClassesFactAttribute()
    {
        if (!File.Exists(TokenizerClassHfFixtureTests.FixturePath))
            Skip = $"{TokenizerClassHfFixtureTests.FixturePath} is absent: it is made where transformers is installed, with " +
                   "`python3 tools/make_tokenizer_class_fixtures.py TOKENIZERS tests/fixtures/chat_templates/hf_tokenizer_classes.json` " +
                   "(see the script's usage), and committed.";
    }
}

/// <summary>
/// Every config variant against what transformers' AutoTokenizer itself encoded and decoded (hf_tokenizer_classes.json):
/// tok(text) with and without special tokens, decode, and decode skipping special tokens.
/// </summary>
public class TokenizerClassHfFixtureTests
{
    public static string FixturePath => Path.Combine(Repo.Root, "tests", "fixtures", "chat_templates", "hf_tokenizer_classes.json");

    [HfTokenizerClassesFact]
    public void EveryVariantEncodesAndDecodesAsTransformers()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(FixturePath));
        var failures = new List<string>();
        int checkedTexts = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            string variant = c.GetProperty("variant").GetString()!;
            var ours = TokenizerClassVariants.Get(variant).Ours;
            foreach (var t in c.GetProperty("texts").EnumerateArray())
            {
                checkedTexts++;
                string text = t.GetProperty("text").GetString()!;
                string where = $"{variant} / {EncodeMatchesHfTests.Escape(text)}";
                int[] Ids(string key) => [.. t.GetProperty(key).EnumerateArray().Select(e => e.GetInt32())];
                var ids = ours.Encode(text);
                var plain = ours.Encode(text, addSpecialTokens: false);
                if (!ids.SequenceEqual(Ids("ids")))
                    failures.Add($"{where}: ids\n    ours: [{string.Join(", ", ids)}]\n    hf:   [{string.Join(", ", Ids("ids"))}]");
                if (!plain.SequenceEqual(Ids("ids_no_special")))
                    failures.Add($"{where}: ids without special tokens\n    ours: [{string.Join(", ", plain)}]\n    hf:   [{string.Join(", ", Ids("ids_no_special"))}]");
                string decoded = ours.Decode(Ids("ids_no_special")), skipped = ours.Decode(Ids("ids"), skipSpecialTokens: true);
                if (decoded != t.GetProperty("decoded").GetString())
                    failures.Add($"{where}: decode\n    ours: {EncodeMatchesHfTests.Escape(decoded)}\n    hf:   {EncodeMatchesHfTests.Escape(t.GetProperty("decoded").GetString()!)}");
                if (skipped != t.GetProperty("decoded_skip_special").GetString())
                    failures.Add($"{where}: decode skipping special tokens\n    ours: {EncodeMatchesHfTests.Escape(skipped)}\n    hf:   {EncodeMatchesHfTests.Escape(t.GetProperty("decoded_skip_special").GetString()!)}");
            }
        }
        Assert.True(checkedTexts > 0, $"{FixturePath} holds no cases");
        Assert.True(failures.Count == 0, $"{failures.Count} differences from transformers over {checkedTexts} texts:\n" + string.Join("\n", failures.Take(20)));
    }
}
