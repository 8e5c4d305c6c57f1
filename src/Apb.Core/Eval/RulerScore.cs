namespace Apb.Eval;

/// <summary>
/// RULER's string_match_all: the fraction of expected strings that occur in the output, case-insensitive; a task's
/// accuracy is the mean over its samples (RULER prints it x100).
/// </summary>
public static class RulerScore
{
    public static double Score(string output, IReadOnlyList<string> expected)
    {
        if (expected.Count == 0) return 0;
        int hit = expected.Count(e => output.Contains(e, StringComparison.OrdinalIgnoreCase));
        return (double)hit / expected.Count;
    }

    public static double Mean(IEnumerable<double> scores)
    {
        double sum = 0; int n = 0;
        foreach (var s in scores) { sum += s; n++; }
        return n == 0 ? 0 : sum / n;
    }
}
