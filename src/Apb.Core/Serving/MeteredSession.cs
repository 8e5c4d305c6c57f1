using System.Diagnostics;
using Apb.Engine;

namespace Apb.Serving;

/// <summary>
/// Times the prefill and counts and times decode steps of the session it wraps. Generation can end inside
/// <see cref="Generator.Run"/> by an exception (a stop sequence, a cancelled client), which leaves no result object;
/// the counts here still say how much work was done.
/// </summary>
sealed class MeteredSession(IInferenceSession inner) : IInferenceSession
{
    public int Length => inner.Length;
    public string? Settings => inner.Settings;
    public TimeSpan PrefillTime { get; private set; }
    public TimeSpan DecodeTime { get; private set; }
    public int Decodes { get; private set; }
    /// <summary>Stopwatch timestamp when the prefill's logits (the first token) were ready; 0 before.</summary>
    public long FirstTokenAt { get; private set; }

    public float[] Prefill(IReadOnlyList<int> context, IReadOnlyList<int> query)
    {
        long start = Stopwatch.GetTimestamp();
        var logits = inner.Prefill(context, query);
        FirstTokenAt = Stopwatch.GetTimestamp();
        PrefillTime = Stopwatch.GetElapsedTime(start, FirstTokenAt);
        return logits;
    }

    public float[] Decode(int token)
    {
        long start = Stopwatch.GetTimestamp();
        var logits = inner.Decode(token);
        DecodeTime += Stopwatch.GetElapsedTime(start);
        Decodes++;
        return logits;
    }

    public void Dispose() => inner.Dispose();
}
