using System.CommandLine;
using System.Text.Json;
using Apb.Engine;
using Apb.Runtime;

namespace Apb.Cli.Commands;

/// <summary>
/// `apb logits`: fp32 logits for every input position, to compare with Hugging Face or between strategies.
/// Text is tokenized exactly as HF's tokenizer(text) does: no chat template, special tokens only where the
/// tokenizer's post-processor adds them.
/// </summary>
static class LogitsCommand
{
    public static Command Create(Io io)
    {
        var model = CommonOptions.Model();
        var device = CommonOptions.Device();
        var ids = new Option<string?>("--ids") { Description = "comma-separated token ids, e.g. --ids 1,2,3" };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "text, tokenized as HF tokenizer(text)" };
        var output = new Option<string?>("--out", "-o") { Description = "write {\"ids\": [...], \"logits\": [[...], ...]} to this JSON file" };
        var query = new Option<string?>("--query", "-q") { Description = "query text after the context (APB puts it in its anchor); tokenized without special tokens" };
        var insertAt = new Option<int>("--anchor-insert-at") { Description = "context tokens before the query in APB's anchor (the chat header; 0 for plain text)" };
        var strategy = new StrategyFlags();
        var cmd = new Command("logits", "print or save the model's logits for a prompt") { model, device, ids, prompt, output, query, insertAt };
        strategy.AddTo(cmd);
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            using var bundle = CommonOptions.OpenModel(r.GetValue(model), io);
            var context = Tokens(r.GetValue(ids), r.GetValue(prompt), bundle);
            var q = r.GetValue(query) is { } qt ? bundle.Tokenizer.Encode(qt, addSpecialTokens: false) : Array.Empty<int>();
            var request = new PromptTokens(context, q, r.GetValue(insertAt));
            var tokens = request.All;
            GenerateCommand.CheckLength(tokens.Count, 0, bundle.Config.MaxPositionEmbeddings);
            string dev = r.GetValue(device)!;
            var so = strategy.Options(r, request.AnchorInsertAt, bundle.Tokenizer.PadTokenId ?? 0);
            using var session = StrategyFlags.Session(bundle, so, () => CommonOptions.Backend(dev), tokens.Count, tokens.Count);
            if (session is null) return 0; // a launched rank other than 0: it followed rank 0, which reports
            var logits = session switch
            {
                LocalSession l => l.AllLogits(tokens),
                GroupSession g => g.AllLogits(context, q),
                _ => throw new InvalidOperationException(session.GetType().Name),
            };
            StrategyFlags.Report(io, session, strategy.Timings(r));
            int vocab = bundle.Config.VocabSize;
            if (r.GetValue(output) is { } path) Write(path, tokens, logits, vocab);
            var last = logits.AsSpan((tokens.Count - 1) * vocab, vocab).ToArray();
            var top = Enumerable.Range(0, vocab).OrderByDescending(i => last[i]).Take(5);
            io.Out.WriteLine($"{tokens.Count} positions x {vocab} logits; last position's top 5: " +
                string.Join(", ", top.Select(i => $"{i} ({Escape(bundle.Tokenizer.Decode([i]))}) {last[i]:F4}")));
            return 0;
        }));
        return cmd;
    }

    static IReadOnlyList<int> Tokens(string? ids, string? prompt, ModelBundle bundle)
    {
        if ((ids == null) == (prompt == null)) throw new ApbException("give exactly one of --ids or --prompt");
        if (prompt != null)
        {
            var t = bundle.Tokenizer.Encode(prompt, addSpecialTokens: true);
            if (t.Count == 0) throw new ApbException("--prompt tokenizes to no tokens; give some text");
            return t;
        }
        var list = new List<int>();
        foreach (var part in ids!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(part, out int id))
                throw new ApbException($"--ids: '{part}' is not an integer (expected comma-separated token ids like 1,2,3)");
            if (id < 0 || id >= bundle.Config.VocabSize)
                throw new ApbException($"--ids: token id {id} is outside the vocabulary (0..{bundle.Config.VocabSize - 1})");
            list.Add(id);
        }
        if (list.Count == 0) throw new ApbException("--ids is empty; give comma-separated token ids like 1,2,3");
        return list;
    }

    static void Write(string path, IReadOnlyList<int> ids, float[] logits, int vocab)
    {
        using var fs = File.Create(path);
        using var w = new Utf8JsonWriter(fs);
        w.WriteStartObject();
        w.WriteStartArray("ids");
        foreach (var i in ids) w.WriteNumberValue(i);
        w.WriteEndArray();
        w.WriteStartArray("logits");
        for (int t = 0; t < ids.Count; t++)
        {
            w.WriteStartArray();
            for (int v = 0; v < vocab; v++) w.WriteNumberValue(logits[t * vocab + v]);
            w.WriteEndArray();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    static string Escape(string s) => JsonEncodedText.Encode(s).ToString();
}
