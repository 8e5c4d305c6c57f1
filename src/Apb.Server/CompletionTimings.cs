using Apb.Diagnostics;
using Apb.Serving;

namespace Apb.Server;

/// <summary>
/// Where a completion's time went (chat or text), sent only when the request asks for it with <c>"apb_timings": true</c> (an
/// extension of OpenAI's API): in the response body, or in the stream's chunk that carries finish_reason. Times are
/// milliseconds on the server: the wait in line, the prefill, time to first token from arrival (the wait included) and
/// the decode steps; decode tokens/s counts the tokens after the first (which the prefill produced).
/// <see cref="PrefillRanks"/> is the per-rank phase table the CLI's --timings prints, as numbers.
/// </summary>
public sealed record CompletionTimings(
    string? Strategy, int PromptTokens, int CompletionTokens, double QueueMs, double PrefillMs, double TimeToFirstTokenMs,
    double DecodeMs, double PrefillTokensPerSecond, double DecodeTokensPerSecond, RankTable? PrefillRanks)
{
    /// <summary>The timings of <paramref name="r"/> when <paramref name="job"/> asked for them, else null (left out of the JSON).</summary>
    public static CompletionTimings? For(CompletionJob job, CompletionResult r) => !job.Timings ? null : new(
        r.Strategy, r.PromptTokens, r.CompletionTokens, Ms(r.QueueTime), Ms(r.PrefillTime), Ms(r.TimeToFirstToken),
        Ms(r.DecodeTime), Round(r.PrefillTokensPerSecond), Round(r.DecodeTokensPerSecond),
        r.PrefillProfiles is { Count: > 0 } p ? RankTable.Of(p) : null);

    static double Ms(TimeSpan t) => Round(t.TotalMilliseconds);
    internal static double Round(double x) => Math.Round(x, 3);
}

/// <summary>
/// <see cref="RankProfileTable"/>'s columns and one row of values per rank, with the max/mean row when there are
/// several ranks (null entries: a column that is zero on every rank). Present only where the engine measured the ranks
/// (apb serve's rank group) and the prefill ran in one piece (a prompt of full attention longer than --max-num-tokens
/// is prefilled in chunks and has none).
/// </summary>
public sealed record RankTable(IReadOnlyList<string> Columns, IReadOnlyList<RankRow> Rows, IReadOnlyList<double?>? MaxOverMean)
{
    public static RankTable Of(IReadOnlyList<Profile> profiles)
    {
        var values = profiles.Select(RankProfileTable.Values).ToArray();
        return new RankTable(RankProfileTable.Columns,
            values.Select((v, rank) => new RankRow(rank, v.Select(CompletionTimings.Round).ToArray())).ToArray(),
            values.Length > 1 ? RankProfileTable.Imbalance(values).Select(x => x is double d ? CompletionTimings.Round(d) : (double?)null).ToArray() : null);
    }
}

public sealed record RankRow(int Rank, IReadOnlyList<double> Values);
