using System.CommandLine;
using Apb.Engine;
using Apb.Tokenization;

namespace Apb.Cli.Commands;

/// <summary>`apb generate`: prompt in, streamed text out, timings at the end.</summary>
static class GenerateCommand
{
    const string DefaultPrompt = "Write one sentence about long documents.";

    public static Command Create(Io io)
    {
        var model = CommonOptions.Model();
        var device = CommonOptions.Device();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "prompt text (default: a short demo prompt)" };
        var promptFile = new Option<string?>("--prompt-file") { Description = "read the prompt from this UTF-8 file" };
        var system = new Option<string?>("--system") { Description = "system message (chat mode only)" };
        var chat = new Option<bool?>("--chat") { Description = "wrap the prompt in the model's chat template (default: on when the tokenizer has one); --chat false for raw text" };
        var maxNew = new Option<int>("--max-new-tokens", "-n") { Description = "most tokens to generate", DefaultValueFactory = _ => 64 };
        var temperature = new Option<double>("--temperature", "-t") { Description = "0 = greedy", DefaultValueFactory = _ => 0 };
        var topK = new Option<int>("--top-k") { Description = "keep the k most likely tokens (0 = off)", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { Description = "nucleus sampling mass (1 = off)", DefaultValueFactory = _ => 1 };
        var seed = new Option<int?>("--seed") { Description = "random seed for sampling" };

        var cmd = new Command("generate", "generate text from a prompt (CPU reference backend by default)")
        {
            model, device, prompt, promptFile, system, chat, maxNew, temperature, topK, topP, seed,
        };
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            var options = new SamplingOptions
            {
                Temperature = r.GetValue(temperature), TopK = r.GetValue(topK), TopP = r.GetValue(topP),
                Seed = r.GetValue(seed), MaxNewTokens = r.GetValue(maxNew),
            };
            options.Validate();
            string text = ReadPrompt(r.GetValue(prompt), r.GetValue(promptFile)) ?? DefaultPrompt;

            using var bundle = ModelBundle.Open(CommonOptions.ResolveModel(r.GetValue(model)));
            var tok = bundle.Tokenizer;
            bool useChat = r.GetValue(chat) ?? tok.ChatTemplate.Name != "plain";
            string rendered = useChat
                ? tok.ChatTemplate.Render(Messages(r.GetValue(system), text), addGenerationPrompt: true)
                : text;
            // The chat template writes BOS itself; a raw prompt gets what the tokenizer's post-processor adds.
            var ids = tok.Encode(rendered, addSpecialTokens: !useChat);
            CheckLength(ids.Count, options.MaxNewTokens, bundle.Config.MaxPositionEmbeddings);

            var backend = CommonOptions.Backend(r.GetValue(device));
            var m = bundle.LoadModel(backend);
            using var session = new LocalSession(m, ids.Count + options.MaxNewTokens);
            io.Err.WriteLine($"model {Path.GetFullPath(bundle.Directory)} on {backend.Name}; prompt {ids.Count} tokens{(useChat ? $" ({tok.ChatTemplate.Name} chat)" : "")}");
            var result = Generator.Run(session, tok, ids, Array.Empty<int>(), options, bundle.StopTokens.ToHashSet(),
                piece => { io.Out.Write(piece); io.Out.Flush(); });
            io.Out.WriteLine();
            io.Err.WriteLine(Stats(result));
            return 0;
        }));
        return cmd;
    }

    public static string? ReadPrompt(string? prompt, string? file)
    {
        if (prompt != null && file != null) throw new ApbException("give either --prompt or --prompt-file, not both");
        if (file == null) return prompt;
        if (!File.Exists(file)) throw new ApbException($"{file}: prompt file not found");
        return File.ReadAllText(file);
    }

    static List<ChatMessage> Messages(string? system, string user)
    {
        var m = new List<ChatMessage>();
        if (!string.IsNullOrEmpty(system)) m.Add(new ChatMessage("system", system));
        m.Add(new ChatMessage("user", user));
        return m;
    }

    public static void CheckLength(int promptTokens, int maxNew, int maxPositions)
    {
        if (promptTokens > maxPositions)
            throw new ApbException($"the prompt has {promptTokens} tokens but the model's max_position_embeddings is {maxPositions}: shorten the prompt");
        if (promptTokens + maxNew > maxPositions)
            throw new ApbException($"prompt ({promptTokens} tokens) + --max-new-tokens ({maxNew}) exceeds max_position_embeddings ({maxPositions}): lower --max-new-tokens to {maxPositions - promptTokens} or less");
    }

    public static string Stats(GenerationResult r) =>
        $"prefill: {r.PromptTokens} tokens in {r.PrefillTime.TotalSeconds:F3} s ({r.PrefillTokensPerSecond:F1} tok/s); " +
        $"decode: {r.OutputIds.Count} tokens in {r.DecodeTime.TotalSeconds:F3} s ({r.DecodeTokensPerSecond:F1} tok/s); finish: {r.FinishReason}";
}
