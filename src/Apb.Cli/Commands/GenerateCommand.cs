using System.CommandLine;
using Apb.Checkpoints;
using Apb.Engine;

namespace Apb.Cli.Commands;

/// <summary>`apb generate`: prompt in, streamed text out, timings at the end.</summary>
static class GenerateCommand
{
    const string DefaultPrompt = "Write one sentence about long documents.";

    public static Command Create(Io io)
    {
        var model = new ModelFlags();
        var device = CommonOptions.Device();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "prompt text (default: a short demo prompt)" };
        var promptFile = new Option<string?>("--prompt-file") { Description = "read the prompt from this UTF-8 file" };
        var system = new Option<string?>("--system") { Description = "system message (chat mode only)" };
        var chat = new Option<bool?>("--chat") { Description = "wrap the prompt in the model's chat template (default: on when the tokenizer has one); --chat false for raw text" };
        var maxNew = new Option<int>("--max-new-tokens", "-n", "--max-tokens") { Description = "most tokens to generate", DefaultValueFactory = _ => 64 };
        var temperature = new Option<double>("--temperature", "-t") { Description = "0 = greedy", DefaultValueFactory = _ => 0 };
        var topK = new Option<int>("--top-k") { Description = "keep the k most likely tokens (0 = off)", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { Description = "nucleus sampling mass (1 = off)", DefaultValueFactory = _ => 1 };
        var seed = new Option<int?>("--seed") { Description = "random seed for sampling" };
        var context = new Option<string?>("--context") { Description = "the long document (APB's context); the question goes in --query" };
        var contextFile = new Option<string?>("--context-file") { Description = "read the document from this UTF-8 file" };
        var query = new Option<string?>("--query") { Description = "the question about the document" };
        var quiet = CommonOptions.Quiet();
        var strategy = new StrategyFlags();
        var templateFlags = new ChatTemplateFlags();

        var cmd = new Command("generate", "generate text from a prompt (CPU reference backend by default); with no prompt and no --model, a demo: the embedded model answers a needle question with APB over 4 ranks and with full attention")
        {
            device, prompt, promptFile, system, chat, maxNew, temperature, topK, topP, seed, context, contextFile, query, quiet,
        };
        model.AddTo(cmd);
        strategy.AddTo(cmd);
        templateFlags.AddTo(cmd);
        cmd.SetAction(r => Cli.Guard(io, r.GetValue(quiet), io =>
        {
            var options = new SamplingOptions
            {
                Temperature = r.GetValue(temperature), TopK = r.GetValue(topK), TopP = r.GetValue(topP),
                Seed = r.GetValue(seed), MaxNewTokens = r.GetValue(maxNew),
            };
            options.Validate();
            string? document = ReadPrompt(r.GetValue(context), r.GetValue(contextFile), "--context");
            string? text = ReadPrompt(r.GetValue(prompt), r.GetValue(promptFile));
            if (document != null && text != null) throw new ApbException("give either a prompt (--prompt/--prompt-file) or a document (--context/--context-file) with --query, not both");
            // No model and nothing to say: the embedded demo (a needle question, APB over 4 ranks against full attention).
            if (document == null && text == null && r.GetValue(query) == null && model.Get(r) == null)
                return DemoCommand.Run(io, r.GetValue(device)!, r.GetValue(seed) ?? 0, strategy.Fp8Attention(r));

            using var bundle = CommonOptions.OpenModel(model.Get(r), io);
            var tok = templateFlags.Apply(bundle.Tokenizer, r);
            bool useChat = r.GetValue(chat) ?? tok.ChatTemplate.Name != "plain";
            string question = r.GetValue(query) ?? "";
            int limit = bundle.Config.MaxPositionEmbeddings;
            // A single prompt is cut at its last blank line (document, then question), as the server cuts a user turn.
            var tokens = Tokenize(limit, () => (useChat, document) switch
            {
                (true, null) => PromptTokens.FromChat(tok, r.GetValue(system), text ?? DefaultPrompt, "", limit),
                (true, _) => PromptTokens.FromChat(tok, r.GetValue(system), document, question, limit),
                (false, null) => PromptTokens.FromText(tok, text ?? DefaultPrompt, limit),
                (false, _) => PromptTokens.FromParts(tok, document, question, limit),
            });
            CheckLength(tokens.Count, options.MaxNewTokens, limit);

            string dev = r.GetValue(device)!;
            bool? fp8 = strategy.Fp8Attention(r);
            if (fp8 == true) Backends.Qk8.RequireHeadDim(bundle.Config.HeadDim);
            var so = strategy.Options(r, bundle.Directory, tokens.AnchorInsertAt, tok.PadTokenId ?? 0);
            using var opened = StrategyFlags.Session(bundle, so, () => CommonOptions.Backend(dev, fp8), tokens.Count + options.MaxNewTokens, tokens.Count);
            if (opened is null) return 0; // a launched rank other than 0: it followed rank 0, which reports
            var session = new PrefillProgress(opened, io.Progress(TimeSpan.FromSeconds(5)));
            io.Err.WriteLine($"model {Path.GetFullPath(bundle.Directory)} on {dev}; context {tokens.Context.Count} + query {tokens.Query.Count} tokens" +
                $"{(useChat ? $" ({tok.ChatTemplate.Name} chat)" : "")}; strategy {so.Describe()}{StrategyFlags.AttentionLabel(fp8)}");
            var result = Generator.Run(session, tok, tokens.Context, tokens.Query, options, bundle.StopTokens.ToHashSet(),
                piece => { io.Out.Write(piece); io.Out.Flush(); });
            io.Out.WriteLine();
            StrategyFlags.Report(io, opened, strategy.Timings(r));
            io.Err.WriteLine(Stats(result));
            return 0;
        }));
        return cmd;
    }

    /// <summary>A prompt file holds text for one context: 64 MiB is ~16M tokens, past any model's.</summary>
    internal const long MaxPromptFileBytes = 64L << 20;

    public static string? ReadPrompt(string? inline, string? file, string name = "--prompt")
    {
        if (inline != null && file != null) throw new ApbException($"give either {name} or {name}-file, not both");
        if (file == null) return inline;
        return InputFile.ReadAllText(file, MaxPromptFileBytes, $"{name.TrimStart('-')} file");
    }

    /// <summary>Builds the prompt with tokenization bounded by the context (<paramref name="maxPositions"/>), and refuses an empty one.</summary>
    public static PromptTokens Tokenize(int maxPositions, Func<PromptTokens> build)
    {
        PromptTokens tokens;
        try { tokens = build(); }
        catch (PromptTooLongException e)
        {
            throw new ApbException($"{e.Message}, but the model's max_position_embeddings is {maxPositions}: shorten the prompt");
        }
        if (tokens.Count == 0) throw new ApbException("the prompt is empty after tokenization: give some text with --prompt or --prompt-file");
        return tokens;
    }

    public static void CheckLength(int promptTokens, int maxNew, int maxPositions)
    {
        if (promptTokens > maxPositions)
            throw new ApbException($"the prompt has {promptTokens} tokens but the model's max_position_embeddings is {maxPositions}: shorten the prompt");
        // In long: prompt + 2^31-1 new tokens must not wrap around to a small number and pass.
        if ((long)promptTokens + maxNew > maxPositions)
            throw new ApbException($"prompt ({promptTokens} tokens) + --max-new-tokens ({maxNew}) exceeds max_position_embeddings ({maxPositions}): lower --max-new-tokens to {maxPositions - promptTokens} or less");
    }

    /// <summary>
    /// The run's numbers on one line. The first new token comes from the prefill's logits; decode tok/s counts the steps
    /// after it, so with one token (or none) there is no decode rate to give.
    /// </summary>
    public static string Stats(GenerationResult r)
    {
        int n = r.OutputIds.Count;
        string decode = n <= 1
            ? $"decode: {n} token{(n == 1 ? "" : "s")} (from the prefill's logits; no decode step to time)"
            : $"decode: {n} tokens in {r.DecodeTime.TotalSeconds:F3} s ({r.DecodeTokensPerSecond:F1} tok/s)";
        return $"prefill: {r.PromptTokens} tokens in {r.PrefillTime.TotalSeconds:F3} s ({r.PrefillTokensPerSecond:F1} tok/s); {decode}; finish: {r.FinishReason}";
    }
}
