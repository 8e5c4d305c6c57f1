namespace Apb.Engine;

/// <summary>Picks the next token from a row of logits: greedy, or temperature -> top-k -> top-p sampling with a seed.</summary>
public sealed class Sampler
{
    readonly SamplingOptions _o;
    readonly Random _rng;

    public Sampler(SamplingOptions options)
    {
        options.Validate();
        _o = options;
        _rng = options.Seed is int s ? new Random(s) : new Random();
    }

    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    public int Next(ReadOnlySpan<float> logits)
    {
        if (_o.Temperature == 0) return ArgMax(logits);
        // Candidates sorted by logit, best first; softmax over the survivors of top-k, then the top-p nucleus.
        var idx = new int[logits.Length];
        for (int i = 0; i < idx.Length; i++) idx[i] = i;
        var l = logits.ToArray();
        Array.Sort(idx, (a, b) => l[b].CompareTo(l[a]) is var c && c != 0 ? c : a.CompareTo(b));
        int n = _o.TopK > 0 ? Math.Min(_o.TopK, idx.Length) : idx.Length;
        var p = new double[n];
        double max = l[idx[0]] / _o.Temperature, sum = 0;
        for (int i = 0; i < n; i++) sum += p[i] = Math.Exp(l[idx[i]] / _o.Temperature - max);
        double cum = 0;
        int keep = n;
        for (int i = 0; i < n; i++)
        {
            cum += p[i] / sum;
            if (cum >= _o.TopP) { keep = i + 1; break; }
        }
        double total = 0;
        for (int i = 0; i < keep; i++) total += p[i];
        double r = _rng.NextDouble() * total;
        for (int i = 0; i < keep; i++)
        {
            r -= p[i];
            if (r <= 0) return idx[i];
        }
        return idx[keep - 1];
    }
}
