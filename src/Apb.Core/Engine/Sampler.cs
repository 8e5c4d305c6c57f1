using System.Numerics.Tensors;

namespace Apb.Engine;

/// <summary>
/// Picks the next token from a row of logits: penalties and bias first (<see cref="SamplingOptions"/>), then greedy, or
/// temperature -> top-k -> top-p sampling with a seed. One sampler per generation: it counts the tokens it picked, which
/// the penalties need. Without penalties or bias the logits are read in place (nothing is copied).
/// </summary>
public sealed class Sampler
{
    readonly SamplingOptions _o;
    readonly Random _rng;
    readonly Dictionary<int, int>? _picked;   // token -> times picked, for the penalties
    float[]? _adjusted;

    public Sampler(SamplingOptions options)
    {
        options.Validate();
        _o = options;
        _rng = options.Seed is int s ? new Random(s) : new Random();
        if (options.FrequencyPenalty != 0 || options.PresencePenalty != 0) _picked = new Dictionary<int, int>();
    }

    /// <summary>Greedy's pick: the lowest id of the largest logit; NaN never wins (all NaN or -inf gives 0). IBackend.ArgMaxRows follows this rule on the device.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        float v = float.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++)
            if (logits[i] > v) { v = logits[i]; best = i; }
        return best;
    }


    public int Next(ReadOnlySpan<float> logits)
    {
        var l = _o.AdjustsLogits ? Adjust(logits) : logits;
        int token = _o.Temperature == 0 ? ArgMax(l) : Sample(l);
        if (_picked != null) _picked[token] = _picked.GetValueOrDefault(token) + 1;
        return token;
    }

    ReadOnlySpan<float> Adjust(ReadOnlySpan<float> logits)
    {
        var a = _adjusted is { } buf && buf.Length == logits.Length ? buf : _adjusted = new float[logits.Length];
        logits.CopyTo(a);
        if (_picked != null)
            foreach (var (token, count) in _picked)
                a[token] -= (float)(count * _o.FrequencyPenalty + _o.PresencePenalty);
        if (_o.LogitBias != null)
            foreach (var (token, bias) in _o.LogitBias)
            {
                if (token >= a.Length) throw new ApbException($"logit bias names token id {token}, outside the vocabulary (0..{a.Length - 1})");
                a[token] += bias;
            }
        return a;
    }

    int Sample(ReadOnlySpan<float> logits)
    {
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

    /// <summary>
    /// The log-probability of <paramref name="token"/> under <paramref name="logits"/> (log-softmax, in double) and the
    /// <paramref name="top"/> most likely tokens with theirs, best first (ties: lower id first). One pass for the
    /// normalizer and one for the top list, which is kept sorted in a buffer of <paramref name="top"/> entries.
    /// </summary>
    public static TokenLogprob Logprob(ReadOnlySpan<float> logits, int token, int top)
    {
        float max = TensorPrimitives.Max(logits);
        double sum = 0;
        foreach (float x in logits) sum += Math.Exp(x - max);
        double logZ = max + Math.Log(sum);
        var best = new (int Token, float Logit)[Math.Min(top, logits.Length)];
        int held = 0;
        for (int i = 0; i < logits.Length && best.Length > 0; i++)
        {
            float x = logits[i];
            if (held == best.Length && x <= best[held - 1].Logit) continue;
            int at = held < best.Length ? held++ : held - 1;
            while (at > 0 && best[at - 1].Logit < x) { best[at] = best[at - 1]; at--; }
            best[at] = (i, x);
        }
        var alternatives = new TokenProbability[held];
        for (int i = 0; i < held; i++) alternatives[i] = new TokenProbability(best[i].Token, (float)(best[i].Logit - logZ));
        return new TokenLogprob(token, (float)(logits[token] - logZ), alternatives);
    }
}

/// <summary>A token and its log-probability.</summary>
public readonly record struct TokenProbability(int Token, float Logprob);

/// <summary>A generated token's log-probability and the most likely tokens at its position (OpenAI's logprobs).</summary>
public sealed record TokenLogprob(int Token, float Logprob, IReadOnlyList<TokenProbability> Top);
