using System.Text.Json;

namespace Apb.Tests.Model;

/// <summary>What tools/make_fixtures.py wrote beside a checkpoint: HF's float64 logits (as fp32) and greedy tokens.</summary>
public sealed class ReferenceFixture
{
    public required string Dir { get; init; }
    public required int[] PromptIds { get; init; }
    public required int[] GreedyIds { get; init; }
    public required string PromptText { get; init; }
    public required int Vocab { get; init; }
    public required float[] Logits { get; init; }   // [PromptIds.Length, Vocab]

    public static ReferenceFixture Load(string dir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "reference.json")));
        var r = doc.RootElement;
        var bytes = File.ReadAllBytes(Path.Combine(dir, "logits.f32"));
        var logits = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, logits, 0, bytes.Length);
        return new ReferenceFixture
        {
            Dir = dir,
            PromptIds = r.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            GreedyIds = r.GetProperty("greedy_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            PromptText = r.GetProperty("prompt_text").GetString()!,
            Vocab = r.GetProperty("vocab_size").GetInt32(),
            Logits = logits,
        };
    }

    /// <summary>‖a − b‖ / ‖b‖ over a whole tensor.</summary>
    public static double RelativeError(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++) { double d = a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
        return Math.Sqrt(num / den);
    }
}
