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
        var model = new ModelFlags();
        var device = CommonOptions.Device();
        var ids = new Option<string?>("--ids") { Description = "comma-separated token ids, e.g. --ids 1,2,3" };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "text, tokenized as HF tokenizer(text)" };
        var outPath = new Option<string?>("--out", "-o") { Description = "write {\"ids\": [...], \"logits\": [[...], ...]} to this JSON file (- for stdout; the summary line then goes to stderr)" };
        var query = new Option<string?>("--query") { Description = "query text after the context (APB puts it in its anchor); tokenized without special tokens" };
        var insertAt = new Option<int>("--anchor-insert-at") { Description = "context tokens before the query in APB's anchor (the chat header; 0 for plain text)" };
        var strategy = new StrategyFlags();
        var cmd = new Command("logits", "print or save the model's logits for a prompt") { device, ids, prompt, outPath, query, insertAt };
        model.AddTo(cmd);
        strategy.AddTo(cmd);
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            // The output file is opened first: a folder that does not exist is said now, not after the forward pass. Under
            // apb launch only rank 0 reports, so only it writes.
            bool reports = Runtime.Launch.LaunchEnvironment.Current is null or { Rank: 0 };
            using var output = r.GetValue(outPath) is { } path && reports ? CommonOptions.OpenOutput(path, "--out", io) : null;
            using var bundle = CommonOptions.OpenModel(model.Get(r), io);
            int limit = bundle.Config.MaxPositionEmbeddings;
            var context = Tokens(r.GetValue(ids), r.GetValue(prompt), bundle, limit);
            var q = r.GetValue(query) is { } qt ? Encode(bundle, qt, addSpecialTokens: false, limit, "--query") : Array.Empty<int>();
            int at = r.GetValue(insertAt);
            if (at < 0 || at > context.Count)
                throw new ApbException($"--anchor-insert-at {at} is outside the context of {context.Count} tokens: give 0..{context.Count} (the chat header's length; 0 for plain text)");
            var request = new PromptTokens(context, q, at);
            var tokens = request.All;
            GenerateCommand.CheckLength(tokens.Count, 0, limit);
            string dev = r.GetValue(device)!;
            bool? fp8 = strategy.Fp8Attention(r);
            if (fp8 == true) Backends.Qk8.RequireHeadDim(bundle.Config.HeadDim);
            var so = strategy.Options(r, bundle.Directory, request.AnchorInsertAt, bundle.Tokenizer.PadTokenId ?? 0);
            using var session = StrategyFlags.Session(bundle, so, () => CommonOptions.Backend(dev, fp8), tokens.Count, tokens.Count);
            if (session is null) return 0; // a launched rank other than 0: it followed rank 0, which reports
            var logits = session switch
            {
                LocalSession l => l.AllLogits(tokens),
                GroupSession g => g.AllLogits(context, q),
                _ => throw new InvalidOperationException(session.GetType().Name),
            };
            StrategyFlags.Report(io, session, strategy.Timings(r));
            int vocab = bundle.Config.VocabSize;
            for (int t = 0; t < tokens.Count; t++) Generator.CheckFinite(logits.AsSpan(t * vocab, vocab), t + 1);
            if (output is not null) Write(output, tokens, logits, vocab);
            if (output is WriterStream) io.Out.WriteLine();
            var last = logits.AsSpan((tokens.Count - 1) * vocab, vocab).ToArray();
            var top = Enumerable.Range(0, vocab).OrderByDescending(i => last[i]).Take(5);
            (r.GetValue(outPath) == "-" ? io.Err : io.Out).WriteLine($"{tokens.Count} positions x {vocab} logits; last position's top 5: " +
                string.Join(", ", top.Select(i => $"{i} ({Escape(bundle.Tokenizer.Decode([i]))}) {last[i]:F4}")));
            return 0;
        }));
        return cmd;
    }

    static IReadOnlyList<int> Tokens(string? ids, string? prompt, ModelBundle bundle, int limit)
    {
        if ((ids == null) == (prompt == null)) throw new ApbException("give exactly one of --ids or --prompt");
        if (prompt != null)
        {
            var t = Encode(bundle, prompt, addSpecialTokens: true, limit, "--prompt");
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

    // Tokenization stops once the text cannot fit the model's context.
    static IReadOnlyList<int> Encode(ModelBundle bundle, string text, bool addSpecialTokens, int limit, string option)
    {
        var t = bundle.Tokenizer.Encode(text, addSpecialTokens, limit);
        return t.Count <= limit ? t
            : throw new ApbException($"{option} has more than {limit} tokens (tokenization stopped there), but the model's max_position_embeddings is {limit}: shorten it");
    }

    static void Write(Stream fs, IReadOnlyList<int> ids, float[] logits, int vocab)
    {
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
