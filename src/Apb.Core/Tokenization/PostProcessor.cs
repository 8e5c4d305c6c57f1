namespace Apb.Tokenization;

/// <summary>
/// The special ids tokenizer.json's post-processor wraps a single sequence in when special tokens are added
/// (TemplateProcessing's "single" template, e.g. Llama-3.1's &lt;|begin_of_text|&gt; $A). ByteLevel post-processing only
/// touches offsets, so it adds nothing here.
/// </summary>
internal sealed class PostProcessor
{
    public static readonly PostProcessor None = new([], []);

    public PostProcessor(int[] before, int[] after)
    {
        Before = before;
        After = after;
    }

    public int[] Before { get; }
    public int[] After { get; }

    public bool AddsTokens => Before.Length + After.Length > 0;

    public List<int> Apply(List<int> ids)
    {
        if (!AddsTokens) return ids;
        var result = new List<int>(ids.Count + Before.Length + After.Length);
        result.AddRange(Before);
        result.AddRange(ids);
        result.AddRange(After);
        return result;
    }
}
