namespace Apb.Eval;

/// <summary>
/// One RULER-style sample: a document (<see cref="Context"/>), the question with its answer prefix (<see cref="Query"/>),
/// and the strings a correct output must contain. Context and query are tokenized apart (APB needs the split).
/// </summary>
public sealed record EvalSample(string Task, int TargetTokens, int Index, string Context, string Query, IReadOnlyList<string> Answers)
{
    /// <summary>The answer as a model should write it after the query (training target): " a, b, c".</summary>
    public string AnswerText => " " + string.Join(", ", Answers);
}

/// <summary>A sample with its token ids: context (with the tokenizer's BOS, if any), query and answer (neither).</summary>
public sealed record EncodedSample(EvalSample Sample, int[] ContextIds, int[] QueryIds, int[] AnswerIds)
{
    public int PromptTokens => ContextIds.Length + QueryIds.Length;
}
