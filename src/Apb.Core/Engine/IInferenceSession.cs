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

    /// <summary>
    /// What defaults chose for this request, once it has prefilled: APB's l_a, l_p and passing budget, Star's l_a, a note
    /// when the strategy differs from the one asked for (<see cref="Strategies.PrefillPlan.Settings"/>); null where
    /// nothing was chosen (one rank, the exact strategies) and before the prefill. What an accuracy file records per row.
    /// </summary>
    string? Settings => null;
}
