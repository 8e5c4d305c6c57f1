using Apb.Engine;
using Apb.Tokenization;
using Xunit;

namespace Apb.Tests.EngineTests;

/// <summary>The decode loop's contract with a session, on a scripted session (no model).</summary>
public class GeneratorTests
{
    /// <summary>Logits that make token <c>favourite</c> the argmax; Agree maps tokens as a process group's rank 0 would.</summary>
    sealed class Scripted(int vocab, int favourite, Func<int, int> agree) : IInferenceSession
    {
        public int Decodes, Length;
        float[] Logits() { var l = new float[vocab]; l[favourite] = 1; return l; }
        public float[] Prefill(IReadOnlyList<int> context, IReadOnlyList<int> query) { Length = context.Count + query.Count; return Logits(); }
        public float[] Decode(int token) { Decodes++; Length++; return Logits(); }
        public int Agree(int token) => agree(token);
        int IInferenceSession.Length => Length;
        public void Dispose() { }
    }

    static HfTokenizer Tokenizer => HfTokenizer.Load(Path.Combine(Repo.TinyModel, "tokenizer.json"), Path.Combine(Repo.TinyModel, "tokenizer_config.json"));

    [Fact]
    public void TheGroupsTokenDecidesStopping()
    {
        // This rank would pick 7 forever, but rank 0 picked the stop token 2: the loop must stop with it, not go on alone.
        var s = new Scripted(640, favourite: 7, agree: _ => 2);
        var r = Generator.Run(s, Tokenizer, [1, 2, 3], [], new SamplingOptions { MaxNewTokens = 5 }, new HashSet<int> { 2 });
        Assert.Equal("stop", r.FinishReason);
        Assert.Empty(r.OutputIds);
        Assert.Equal(0, s.Decodes);
    }

    [Fact]
    public void AgreedTokensAreTheOnesDecoded()
    {
        var s = new Scripted(640, favourite: 7, agree: t => t + 1);
        var r = Generator.Run(s, Tokenizer, [1, 2, 3], [], new SamplingOptions { MaxNewTokens = 4 }, new HashSet<int>());
        Assert.Equal(new[] { 8, 8, 8, 8 }, r.OutputIds);
        Assert.Equal("length", r.FinishReason);
        Assert.Equal(3, s.Decodes); // the last token needs no step
    }
}
