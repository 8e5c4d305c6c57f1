using System.Diagnostics;
using System.Text;
using Xunit;
using Xunit.Abstractions;

namespace Apb.Tests.Tokenization;

public class EncodeSpeedTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    [InlineData("llama2")] // no pre-tokenizer: the megabyte is one word for BPE
    [InlineData("yi")]
    public void OneMegabyteEncodesInSeconds(string name)
    {
        var t = TokenizerFixtures.Get(name);
        // Random text is the hard case: most words are new, so the word cache rarely helps.
        string first = MegabyteOfText(98), second = MegabyteOfText(99);

        var watch = Stopwatch.StartNew();
        t.Ours.Encode(first);
        double coldSeconds = watch.Elapsed.TotalSeconds; // includes JIT of the encode path (none under Native AOT)
        watch.Restart();
        var ours = t.Ours.Encode(second);
        double warmSeconds = watch.Elapsed.TotalSeconds;
        watch.Restart();
        var hf = t.Hf.Encode(second);
        double hfSeconds = watch.Elapsed.TotalSeconds;

        output.WriteLine($"{name}: {second.Length:N0} chars ({Encoding.UTF8.GetByteCount(second):N0} bytes) -> {ours.Count:N0} tokens " +
                         $"in {warmSeconds:F2} s (first 1 MB, with JIT: {coldSeconds:F2} s; HF Rust: {hfSeconds:F2} s)");
        EncodeMatchesHfTests.AssertSameIds(hf, ours, "<1 MB text>", name);
        // A guard against a quadratic slip, loose enough for a loaded 2-core CI box; the speed is the line above.
        Assert.True(warmSeconds < 30, $"encoding 1 MB took {warmSeconds:F1} s");
    }

    private static string MegabyteOfText(int seed)
    {
        var random = new RandomText(seed);
        var sb = new StringBuilder();
        while (sb.Length < 1_000_000) sb.Append(random.Text(40)).Append(' ');
        return sb.ToString();
    }
}
