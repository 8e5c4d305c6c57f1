using System.Text.RegularExpressions;
using Apb.Eval;
using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.Eval;

/// <summary>The RULER task generators: seeded, on budget, and answerable from the context.</summary>
public class GeneratorTests
{
    internal static readonly HfTokenizer Tok = HfTokenizer.Load(Path.Combine(Repo.TinyModel, "tokenizer.json"),
        Path.Combine(Repo.TinyModel, "tokenizer_config.json"));
    static readonly SampleGenerator Gen = new(Tok);

    /// <summary>Samples tokenized as the embedded model reads them (its haystacks hold as many needles as it will see).</summary>
    static readonly SampleGenerator Embedded = new(HfTokenizer.Load(Path.Combine(Repo.EmbeddedModel, "tokenizer.json"),
        Path.Combine(Repo.EmbeddedModel, "tokenizer_config.json")));

    public static TheoryData<string> Tasks() => new(RulerTasks.All.Concat(RulerTasks.Training).Select(t => t.Name));

    [Theory, MemberData(nameof(Tasks))]
    public void SameSeedSameSampleOtherSeedOtherSample(string task)
    {
        var t = RulerTasks.Get(task);
        var a = Gen.Generate(t, 1024, seed: 3, index: 1);
        var b = Gen.Generate(t, 1024, seed: 3, index: 1);
        var c = Gen.Generate(t, 1024, seed: 4, index: 1);
        Assert.Equal(a.Sample, b.Sample with { Answers = a.Sample.Answers });
        Assert.Equal(a.Sample.Answers, b.Sample.Answers);
        Assert.Equal(a.ContextIds, b.ContextIds);
        Assert.NotEqual(a.Sample.Context, c.Sample.Context);
    }

    [Theory, MemberData(nameof(Tasks))]
    public void HitsTheTokenBudgetFromBelowWithinAFewPercent(string task)
    {
        var t = RulerTasks.Get(task);
        foreach (int target in new[] { 1024, 4096 })
            for (int i = 0; i < 2; i++)
            {
                var s = Gen.Generate(t, target, seed: 0, index: i);
                Assert.True(s.PromptTokens <= target, $"{task} @ {target}: {s.PromptTokens} tokens, over the budget");
                Assert.True(s.PromptTokens >= target * 0.96, $"{task} @ {target}: {s.PromptTokens} tokens, more than 4% short");
                Assert.Equal(Tok.Encode(s.Sample.Context).Count + Tok.Encode(s.Sample.Query, false).Count, s.PromptTokens);
            }
    }

    [Theory, MemberData(nameof(Tasks))]
    public void EveryExpectedAnswerIsInTheContextAndNotGivenAwayByTheQuery(string task)
    {
        for (int i = 0; i < 3; i++)
        {
            var s = Gen.Generate(RulerTasks.Get(task), 2048, seed: 11, index: i).Sample;
            Assert.NotEmpty(s.Answers);
            foreach (var a in s.Answers)
            {
                Assert.Contains(a, s.Context);
                Assert.DoesNotContain(a, s.Query);
            }
        }
    }

    [Fact]
    public void NeedlesSayWhatTheQueryAsksFor()
    {
        foreach (var name in new[] { "niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2", "niah_multikey_3" })
        {
            var s = Gen.Generate(RulerTasks.Get(name), 1024, seed: 5, index: 0).Sample;
            string key = Regex.Match(s.Query, @"for (\S+) mentioned").Groups[1].Value;
            Assert.Contains($"for {key} is: {s.Answers[0]}.", s.Context);
            // The asked-for key names exactly one needle: distractors use other keys.
            Assert.Single(Regex.Matches(s.Context, Regex.Escape($"for {key} is:")));
        }
        var mv = Gen.Generate(RulerTasks.Get("niah_multivalue"), 1024, seed: 5, index: 0).Sample;
        Assert.Equal(4, mv.Answers.Count);
        Assert.Equal(4, mv.Answers.Distinct().Count());
        var mk1 = Gen.Generate(RulerTasks.Get("niah_multikey_1"), 1024, seed: 5, index: 0).Sample;
        Assert.Equal(4, Regex.Matches(mk1.Context, "One of the special magic numbers for").Count);
    }

    [Fact]
    public void WordKeyHaystacksPastTheTwoWordKeysTakeThreeWordKeys()
    {
        // The size search's first guess at 128K tokens of niah_multikey_2 is 16,374 needles, more than the 12,000
        // adjective-noun keys: it used to stop with "cannot draw 16374 distinct values". 128K (about 7,200 needles)
        // keeps two-word keys, as every length that worked before does; 256K (about 12,500) takes three-word keys.
        foreach (var (target, words) in new[] { (131072, 2), (262144, 3) })
        {
            var e = Embedded.Generate(RulerTasks.Get("niah_multikey_2"), target, seed: 1, index: 0);
            var s = e.Sample;
            string key = Regex.Match(s.Query, @"for (\S+) mentioned").Groups[1].Value;
            var keys = Regex.Matches(s.Context, @"numbers for (\S+) is:").Select(m => m.Groups[1].Value).ToList();
            Assert.True(words == key.Split('-').Length, $"{target}: key {key}, {e.PromptTokens} tokens, {keys.Count} needles");
            Assert.Single(Regex.Matches(s.Context, Regex.Escape($"for {key} is:")));
            Assert.Equal(keys.Count, keys.Distinct().Count());
            Assert.True(words == 2 || keys.Count > Values.KeyCount, $"{keys.Count} needles at {target} tokens");
        }
    }

    [Theory]
    [InlineData(1024)]
    [InlineData(4096)]
    public void TheSharedWordTaskKeysHalfItsNeedlesWithAWordOfTheAskedKey(int target)
    {
        for (int index = 0; index < 4; index++)
        {
            var s = Embedded.Generate(RulerTasks.Get("niah_multikey_2_shared"), target, seed: 2, index).Sample;
            string key = Regex.Match(s.Query, @"for (\S+) mentioned").Groups[1].Value;
            var keys = Regex.Matches(s.Context, @"numbers for (\S+) is:").Select(m => m.Groups[1].Value).ToList();
            Assert.Contains($"for {key} is: {s.Answers[0]}.", s.Context);
            Assert.Single(keys, key);
            Assert.Equal(keys.Count, keys.Distinct().Count());
            var words = key.Split('-');
            int sharing = keys.Count(k => k != key && k.Split('-').Intersect(words).Any());
            // Half of the other needles, drawn to share a word; a few of the rest share one by chance.
            Assert.True(sharing >= (keys.Count - 1) / 2, $"{target} tokens: {sharing} of {keys.Count - 1} other keys share a word with {key}");
            Assert.True(keys.Count > (target == 1024 ? 30 : 150), $"{keys.Count} needles in {target} tokens");
        }
    }

    [Theory]
    [InlineData(1024)]
    [InlineData(4096)]
    public void ThePrefixTaskGivesHalfItsNeedlesAValueStartingLikeTheAskedOne(int target)
    {
        for (int index = 0; index < 4; index++)
        {
            var s = Embedded.Generate(RulerTasks.Get("niah_multikey_3_prefix"), target, seed: 2, index).Sample;
            string key = Regex.Match(s.Query, @"uuid for (\S+) mentioned").Groups[1].Value;
            var needles = Regex.Matches(s.Context, @"uuids for (\S+) is: (\S+)\.").Select(m => (Key: m.Groups[1].Value, Value: m.Groups[2].Value)).ToList();
            string answer = Assert.Single(s.Answers);
            Assert.Equal(answer, Assert.Single(needles, x => x.Key == key).Value);
            Assert.Equal(needles.Count, needles.Select(x => x.Key).Distinct().Count());
            Assert.Equal(needles.Count, needles.Select(x => x.Value).Distinct().Count());
            Assert.All(needles, x => Assert.Matches("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", x.Value));
            int similar = needles.Count(x => x.Value != answer && x.Value[..2] == answer[..2]);
            // Half of the other needles, drawn to start like the answer; by chance one in 256 of the rest does too.
            Assert.True(similar >= (needles.Count - 1) / 2, $"{target} tokens: {similar} of {needles.Count - 1} values start like {answer}");
            Assert.True(needles.Count > (target == 1024 ? 8 : 40), $"{needles.Count} needles in {target} tokens");
        }
    }

    [Fact]
    public void VariableTrackingChainLeadsFromTheValueThroughEveryAnswer()
    {
        var s = Gen.Generate(RulerTasks.Get("vt"), 1024, seed: 2, index: 0).Sample;
        string value = Regex.Match(s.Query, @"value (\d+) in").Groups[1].Value;
        Assert.Contains($"VAR {s.Answers[0]} = {value}.", s.Context);
        for (int i = 1; i < s.Answers.Count; i++)
        {
            Assert.Contains($"VAR {s.Answers[i]} = VAR {s.Answers[i - 1]}.", s.Context);
            Assert.True(s.Context.IndexOf($"VAR {s.Answers[i]} =", StringComparison.Ordinal) > s.Context.IndexOf($"VAR {s.Answers[i - 1]} =", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void CommonAndFrequentWordAnswersAreStrictlyTheMostFrequent()
    {
        foreach (var (task, count) in new[] { ("cwe", 10), ("fwe", 3) })
            foreach (int target in new[] { 512, 4096 })
            {
                var s = Gen.Generate(RulerTasks.Get(task), target, seed: 9, index: 0).Sample;
                var words = Regex.Matches(s.Context.Split('\n')[1], @"[a-z]+").Select(m => m.Value).ToList();
                var freq = words.GroupBy(w => w).ToDictionary(g => g.Key, g => g.Count());
                int minAnswer = s.Answers.Min(a => freq[a]);
                int maxOther = freq.Where(kv => !s.Answers.Contains(kv.Key)).Select(kv => kv.Value).DefaultIfEmpty(0).Max();
                Assert.True(minAnswer > maxOther, $"{task} @ {target}: an answer appears {minAnswer} times, another word {maxOther}");
                if (task == "fwe" || target >= 4096) Assert.Equal(count, s.Answers.Count);
            }
    }

    [Fact]
    public void SamplesAreIndependentOfEachOtherAndOfParallelism()
    {
        var tasks = RulerTasks.Parse("niah_single_1,vt");
        var one = Gen.GenerateAll(tasks, [512], 3, seed: 1, threads: 1);
        var many = Gen.GenerateAll(tasks, [512], 3, seed: 1, threads: 4);
        Assert.Equal(one.Select(s => s.Sample.Context), many.Select(s => s.Sample.Context));
        Assert.Equal(Gen.Generate(tasks[1], 512, 1, 2).Sample.Context, one[5].Sample.Context);
    }

    [Fact]
    public void TaskAndLengthSpecsParseOrExplain()
    {
        Assert.Equal(RulerTasks.All.Count, RulerTasks.Parse("all").Count);
        Assert.Equal(8, RulerTasks.Parse("niah").Count);
        // Training-only tasks are taken by name, never by "all" or "niah": no accuracy table changes with them.
        Assert.Equal(["niah_multikey_2_shared", "niah_multikey_3_prefix"],
            RulerTasks.Parse("niah_multikey_2_shared,niah_multikey_3_prefix").Select(t => t.Name));
        Assert.DoesNotContain(RulerTasks.Parse("all"), t => RulerTasks.Training.Contains(t));
        Assert.Equal(["vt", "cwe"], RulerTasks.Parse("vt, cwe").Select(t => t.Name));
        Assert.Contains("expected all", Assert.Throws<ApbException>(() => RulerTasks.Parse("niah_single_9")).Message);
        Assert.Equal([4096, 16384, 300], SampleGenerator.ParseLengths("4k,16K,300"));
        Assert.Throws<ApbException>(() => SampleGenerator.ParseLengths("4x"));
    }
}
