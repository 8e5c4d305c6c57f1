using System.Text.Json;
using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.Tokenization;

/// <summary>Skips a test, saying why, while the transformers-rendered fixture has not been made.</summary>
public sealed class HfRenderedFactAttribute : FactAttribute
{
    public HfRenderedFactAttribute()
    {
        if (!File.Exists(ChatTemplateHfFixtureTests.FixturePath))
            Skip = $"{ChatTemplateHfFixtureTests.FixturePath} is absent: it is made where transformers is installed, with " +
                   "`python3 tools/make_template_fixtures.py TOKENIZERS tests/fixtures/chat_templates/hf_rendered.json` " +
                   "(see the script's usage), and committed.";
    }
}

/// <summary>
/// Every chat template of tests/fixtures/chat_templates (the npm tokenizers' own, and the Llama-2/Mistral/Yi-format
/// ones) on every conversation and setting, against what transformers' apply_chat_template rendered and tokenized:
/// the same text, the same ids, and an error wherever transformers raised one.
/// </summary>
public class ChatTemplateHfFixtureTests
{
    public static string FixturePath => Path.Combine(Repo.Root, "tests", "fixtures", "chat_templates", "hf_rendered.json");

    [HfRenderedFact]
    public void EveryTemplateRendersAndTokenizesAsTransformers()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(FixturePath));
        var failures = new List<string>();
        int checkedCases = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            string name = $"{c.GetProperty("template").GetString()} / {c.GetProperty("conversation").GetString()} / " +
                          $"add_generation_prompt={c.GetProperty("add_generation_prompt").GetBoolean()} {c.GetProperty("kwargs").GetRawText()}";
            var tokenizer = TokenizerFixtures.Get(c.GetProperty("tokenizer").GetString()!).Ours;
            var template = ChatTemplate.FromConfig(c.GetProperty("template_text").GetString(), tokenizer.BosToken, tokenizer.EosToken,
                    c.GetProperty("template").GetString()!)
                .WithArguments(JinjaChatTemplate.ArgumentsFromJson(c.GetProperty("kwargs"), "kwargs"));
            var messages = c.GetProperty("messages").EnumerateArray()
                .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList();
            bool generationPrompt = c.GetProperty("add_generation_prompt").GetBoolean();
            checkedCases++;

            if (c.GetProperty("expected_error").ValueKind == JsonValueKind.String)
            {
                try
                {
                    template.Render(messages, generationPrompt);
                    failures.Add($"{name}: transformers raised {c.GetProperty("expected_error").GetString()}; we rendered without error");
                }
                catch (ApbException) { }
                continue;
            }
            string expected = c.GetProperty("expected_text").GetString()!;
            string ours;
            try { ours = template.Render(messages, generationPrompt); }
            catch (ApbException e)
            {
                failures.Add($"{name}: {e.Message}");
                continue;
            }
            if (ours != expected)
            {
                failures.Add($"{name}: rendered\n    ours: {EncodeMatchesHfTests.Escape(ours)}\n    hf:   {EncodeMatchesHfTests.Escape(expected)}");
                continue;
            }
            if (c.GetProperty("expected_ids").ValueKind != JsonValueKind.Array) continue;
            var ids = tokenizer.Encode(ours, template.EncodeWithSpecialTokens);
            var hfIds = c.GetProperty("expected_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            if (!ids.SequenceEqual(hfIds))
                failures.Add($"{name}: ids\n    ours: [{string.Join(", ", ids)}]\n    hf:   [{string.Join(", ", hfIds)}]");
        }
        Assert.True(checkedCases > 0, $"{FixturePath} holds no cases");
        Assert.True(failures.Count == 0, $"{failures.Count} of {checkedCases} cases differ from transformers:\n" + string.Join("\n", failures.Take(20)));
    }
}
