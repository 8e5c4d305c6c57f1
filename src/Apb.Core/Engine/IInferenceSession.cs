namespace Apb.Engine;

/// <summary>
/// One request's state on whatever runs it (one rank, or a group of ranks with a strategy): prefill the prompt, then
/// decode one token at a time. Logits are the last row's, fp32 on the host.
/// </summary>
public interface IInferenceSession : IDisposable
{
    /// <summary>Prefills context then query (APB needs them apart; single-rank runs them as one sequence).</summary>
    float[] Prefill(IReadOnlyList<int> context, IReadOnlyList<int> query);
    float[] Decode(int token);

    /// <summary>Tokens held in the cache(s) so far.</summary>
    int Length { get; }
}
