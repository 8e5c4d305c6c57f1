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

    /// <summary>
    /// The token the whole group goes on with: rank 0's choice. Every process samples from its own copy of the logits;
    /// when those differ in the last bit (GPUs), ranks could disagree on stopping and wait on each other forever, so the
    /// decode loop asks here before it checks for a stop token. One process: the token itself.
    /// </summary>
    int Agree(int token) => token;
    /// <summary>Tokens held in the cache(s) so far.</summary>
    int Length { get; }
}
