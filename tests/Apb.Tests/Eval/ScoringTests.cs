using Apb.Eval;
using Xunit;

namespace Apb.Tests.Eval;

/// <summary>RULER's string_match_all on hand-made outputs, and the two sample file formats.</summary>
public class ScoringTests
{
    [Theory]
    [InlineData(" 1234567", new[] { "1234567" }, 1.0)]
    [InlineData("The answer is 1234567.", new[] { "1234567" }, 1.0)]
    [InlineData(" 123456", new[] { "1234567" }, 0.0)]                          // a prefix is not a match
    [InlineData(" 111, 222, 444", new[] { "111", "222", "333", "444" }, 0.75)]  // partial credit per value
    [InlineData(" LEMON", new[] { "lemon" }, 1.0)]                               // case-insensitive, as RULER lowercases
    [InlineData("", new[] { "x" }, 0.0)]
    public void ScoreIsTheFractionOfExpectedStringsFound(string output, string[] expected, double score) =>
        Assert.Equal(score, RulerScore.Score(output, expected), 9);

    [Fact]
    public void TaskAccuracyIsTheMeanOverSamples() =>
        Assert.Equal(0.5, RulerScore.Mean([1.0, 0.0, 0.75, 0.25]), 9);

    [Fact]
    public void JsonLinesRoundTripStringsAndIds()
    {
        var gen = new SampleGenerator(GeneratorTests.Tok);
        var samples = gen.GenerateAll(RulerTasks.Parse("niah_single_3,cwe"), [512], 2, seed: 0);
        string path = Path.Combine(Path.GetTempPath(), $"apb-eval-{Guid.NewGuid():N}.jsonl");
        try
        {
            using (var f = File.Create(path)) SampleJsonl.Write(f, samples);
            Assert.Equal(samples.Count, File.ReadAllLines(path).Length);
            var back = SampleJsonl.Read(path);
            for (int i = 0; i < samples.Count; i++)
            {
                Assert.Equal(samples[i].Sample.Context, back[i].Sample.Context);
                Assert.Equal(samples[i].Sample.Query, back[i].Sample.Query);
                Assert.Equal(samples[i].Sample.Answers, back[i].Sample.Answers);
                Assert.Equal(samples[i].ContextIds, back[i].ContextIds);
                Assert.Equal(samples[i].QueryIds, back[i].QueryIds);
                Assert.Equal(samples[i].AnswerIds, back[i].AnswerIds);
                Assert.Equal(GeneratorTests.Tok.Encode(samples[i].Sample.AnswerText, false), back[i].AnswerIds);
            }
            File.AppendAllText(path, "{\"task\": 1}\n");
            Assert.Contains($":{samples.Count + 1}:", Assert.Throws<ApbException>(() => SampleJsonl.Read(path)).Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void IdsFormatIsTaskThenThreeIdLists()
    {
        var s = new SampleGenerator(GeneratorTests.Tok).Generate(RulerTasks.Get("vt"), 512, 0, 0);
        var ms = new MemoryStream();
        SampleJsonl.WriteIds(ms, [s]);
        var fields = System.Text.Encoding.UTF8.GetString(ms.ToArray()).TrimEnd('\n').Split('\t');
        Assert.Equal(4, fields.Length);
        Assert.Equal("vt", fields[0]);
        Assert.Equal(s.ContextIds, fields[1].Split(' ').Select(int.Parse));
        Assert.Equal(s.QueryIds, fields[2].Split(' ').Select(int.Parse));
        Assert.Equal(s.AnswerIds, fields[3].Split(' ').Select(int.Parse));
    }
}
