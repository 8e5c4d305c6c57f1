using Apb.Engine;
using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.EngineTests;

/// <summary>The decode loop's contract with a session, on a scripted session (no model).</summary>
public class GeneratorTests
{
    /// <summary>Logits whose argmax is the next token of a script (its last entry repeats).</summary>
    sealed class Scripted(int vocab, params int[] script) : IInferenceSession
    {
        public int Decodes, Length;
        float[] Logits() { var l = new float[vocab]; l[script[Math.Min(Decodes, script.Length - 1)]] = 1; return l; }
        public float[] Prefill(IReadOnlyList<int> context, IReadOnlyList<int> query) { Length = context.Count + query.Count; return Logits(); }
        public float[] Decode(int token) { Decodes++; Length++; return Logits(); }
        int IInferenceSession.Length => Length;
        public void Dispose() { }
    }

    static HfTokenizer Tokenizer => HfTokenizer.Load(Path.Combine(Repo.TinyModel, "tokenizer.json"), Path.Combine(Repo.TinyModel, "tokenizer_config.json"));

    [Fact]
    public void AStopTokenEndsGenerationAndIsNeitherOutputNorDecoded()
    {
        var s = new Scripted(640, 7, 9, 2, 5);
        var r = Generator.Run(s, Tokenizer, [1, 2, 3], [], new SamplingOptions { MaxNewTokens = 10 }, new HashSet<int> { 2 });
        Assert.Equal("stop", r.FinishReason);
        Assert.Equal(new[] { 7, 9 }, r.OutputIds);
        Assert.Equal(2, s.Decodes);
    }

    [Fact]
    public void TheLastTokenOfTheBudgetNeedsNoDecodeStep()
    {
        var s = new Scripted(640, 8);
        var r = Generator.Run(s, Tokenizer, [1, 2, 3], [], new SamplingOptions { MaxNewTokens = 4 }, new HashSet<int>());
        Assert.Equal(new[] { 8, 8, 8, 8 }, r.OutputIds);
        Assert.Equal("length", r.FinishReason);
        Assert.Equal(3, s.Decodes);
    }
}
