using System.Diagnostics;
using Apb.Tokenization;

namespace Apb.Engine;

public sealed record GenerationResult(
    IReadOnlyList<int> OutputIds, string Text, string FinishReason, int PromptTokens,
    TimeSpan PrefillTime, TimeSpan DecodeTime)
{
    public double PrefillTokensPerSecond => PromptTokens / Math.Max(PrefillTime.TotalSeconds, 1e-9);
    /// <summary>Decode steps per second: the first new token comes from the prefill's logits, each later one from a step.</summary>
    public double DecodeTokensPerSecond => Math.Max(OutputIds.Count - 1, 0) / Math.Max(DecodeTime.TotalSeconds, 1e-9);
}

/// <summary>The decode loop: prefill, then sample / stop / stream one token at a time.</summary>
public static class Generator
{
    /// <param name="logprobs">when given and <see cref="SamplingOptions.Logprobs"/> is set, each generated token's
    /// logprobs are added as it is picked (before its text is streamed), so a caller that ends the loop from
    /// <paramref name="onText"/> still has them</param>
    public static GenerationResult Run(IInferenceSession session, HfTokenizer tokenizer, IReadOnlyList<int> context,
        IReadOnlyList<int> query, SamplingOptions options, IReadOnlyCollection<int> stopTokens, Action<string>? onText = null,
        CancellationToken cancel = default, ICollection<TokenLogprob>? logprobs = null)
    {
        var sampler = new Sampler(options);
        var decoder = new StreamingDecoder(tokenizer);
        var output = new List<int>();
        var sw = Stopwatch.StartNew();
        var logits = session.Prefill(context, query);
        var prefill = sw.Elapsed;
        sw.Restart();
        string finish = "length";
        var text = new System.Text.StringBuilder();
        for (int step = 0; step < options.MaxNewTokens; step++)
        {
            cancel.ThrowIfCancellationRequested();
            CheckFinite(logits, context.Count + query.Count + step);
            int next = sampler.Next(logits);
            if (stopTokens.Contains(next)) { finish = "stop"; break; }
            output.Add(next);
            if (options.Logprobs is int top && logprobs != null) logprobs.Add(Sampler.Logprob(logits, next, top));
            string piece = decoder.Push(next);
            if (piece.Length > 0) { text.Append(piece); onText?.Invoke(piece); }
            if (step + 1 < options.MaxNewTokens) logits = session.Decode(next);
        }
        string tail = decoder.Flush();
        if (tail.Length > 0) { text.Append(tail); onText?.Invoke(tail); }
        return new GenerationResult(output, text.ToString(), finish, context.Count + query.Count, prefill, sw.Elapsed);
    }

    /// <summary>NaN or infinite logits come from broken weights or a config that misdescribes them; sampling from them would emit noise.</summary>
    public static void CheckFinite(ReadOnlySpan<float> logits, int afterTokens)
    {
        // One vectorized pass in the usual case: a NaN or an infinity makes the sum non-finite.
        if (float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum(logits))) return;
        for (int i = 0; i < logits.Length; i++)
            if (!float.IsFinite(logits[i]))
                throw new ApbException($"the model's logits after {afterTokens} tokens hold {logits[i]} (token {i}): the checkpoint's weights contain NaN or infinite values, or config.json describes them wrongly (rope_theta, rms_norm_eps); the output would be noise");
    }
}
