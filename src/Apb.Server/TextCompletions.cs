using System.Diagnostics;
using System.Text.Json;
using Apb.Engine;
using Apb.Serving;
using Microsoft.AspNetCore.Http;

namespace Apb.Server;

/// <summary>POST /v1/completions: raw text (no chat template) in, its continuation out (whole or streamed).</summary>
sealed class TextCompletions(InferenceRunner runner, ServerOptions options)
{
    public async Task HandleAsync(HttpContext ctx, CancellationTokenSource cancel)
    {
        long arrived = Stopwatch.GetTimestamp();
        RequestBody.CheckContentType(ctx);
        // A place in line before the body is read: a full server refuses a large request without holding it.
        using var admission = runner.Queue.Admit();
        var (job, stream, includeUsage) = await ReadAsync(ctx, arrived);
        await admission.EnterAsync(cancel.Token);

        var model = runner.Model;
        string id = "cmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        TextCompletionResponse Body(string text, string? finish, Usage? usage) =>
            new(id, "text_completion", created, model.Id, [new TextChoice(text, 0, null, finish)], usage);
        if (!stream)
        {
            var r = await runner.RunAsync(admission, job, null, cancel.Token);
            await HttpJson.WriteAsync(ctx, Body(r.Text, r.FinishReason, Usage.Of(r)), ServerJson.Api.TextCompletionResponse);
            return;
        }

        var events = new EventStream(ctx.Response);
        var type = ServerJson.Api.TextCompletionResponse;
        await events.StartAsync(cancel.Token);
        var result = await EventStream.PumpAsync(runner, admission, job, text => events.WriteAsync(Body(text, null, null), type, cancel.Token), cancel);
        await events.WriteAsync(Body("", result.FinishReason, null), type, cancel.Token);
        if (includeUsage)
            await events.WriteAsync(new TextCompletionResponse(id, "text_completion", created, model.Id, [], Usage.Of(result)), type, cancel.Token);
        await events.DoneAsync(cancel.Token);
    }

    // Everything that can refuse the request, before it takes a run slot; only the job outlives it (see ChatCompletions).
    async Task<(CompletionJob Job, bool Stream, bool IncludeUsage)> ReadAsync(HttpContext ctx, long arrived)
    {
        var model = runner.Model;
        var req = await RequestBody.ReadAsync(ctx, ServerJson.Api.CompletionRequest, options.RequestBytesFor(model.MaxPositions));
        RequestFields.CheckModel(req.Model, model);
        RequestFields.CheckN(req.N);
        if (req.BestOf is not (null or 1))
            throw new InvalidRequestException($"'best_of' is {req.BestOf}; this server generates one candidate (best_of = 1).", "best_of", "unsupported_parameter");
        if (req.Echo == true)
            throw new InvalidRequestException("'echo' is not supported by this server; leave it out or set it to false.", "echo", "unsupported_parameter");
        if (req.Suffix is not null)
            throw new InvalidRequestException("'suffix' (insertion) is not supported by this server; leave it out.", "suffix", "unsupported_parameter");
        if (req.Logprobs is { ValueKind: not JsonValueKind.Null })
            throw new InvalidRequestException("'logprobs' is not supported by this server; leave it out or set it to null.", "logprobs", "unsupported_parameter");
        var stop = RequestFields.Stop(req.Stop);
        var sampling = RequestFields.Sampling(req.Temperature, req.TopP, req.TopK, req.Seed, 1);
        var prompt = RequestPrompt.Build(model, limit => PromptOf(req.Prompt, model, limit), "prompt");
        int maxNew = TokenBudget.Resolve(model.MaxPositions, prompt.Count, req.MaxTokens, options.DefaultCompletionMaxTokens,
            promptParam: "prompt");
        var job = new CompletionJob(prompt, sampling with { MaxNewTokens = maxNew }, stop) { ArrivedAt = arrived };
        return (job, req.Stream == true, RequestFields.IncludeUsage(req.StreamOptions));
    }

    // A string, a one-element array of strings, or token ids; several prompts per request are not served.
    static PromptTokens PromptOf(JsonElement? prompt, ServedModel model, int maxTokens)
    {
        if (prompt is not { } p || p.ValueKind == JsonValueKind.Null)
            throw new InvalidRequestException("Missing required parameter: 'prompt' (a string).", "prompt", "missing_required_parameter");
        if (p.ValueKind == JsonValueKind.String) return PromptTokens.FromText(model.Tokenizer, RequestBody.Text(p, "prompt"), maxTokens);
        if (p.ValueKind == JsonValueKind.Array)
        {
            int n = p.GetArrayLength();
            if (n == 1 && p[0].ValueKind == JsonValueKind.String)
                return PromptTokens.FromText(model.Tokenizer, RequestBody.Text(p[0], "prompt[0]"), maxTokens);
            if (n > 0 && p[0].ValueKind is JsonValueKind.String or JsonValueKind.Array)
                throw new InvalidRequestException($"'prompt' holds {n} prompts; this server takes one per request. Send them separately.", "prompt", "invalid_value");
            if (n > maxTokens) throw new PromptTooLongException(maxTokens);
            var ids = new int[n];
            int vocab = model.Tokenizer.VocabSize;
            for (int i = 0; i < n; i++)
            {
                var e = p[i];
                if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out ids[i]))
                    throw new InvalidRequestException(
                        $"Invalid type for 'prompt[{i}]': expected a token id (integer), got {RequestBody.Kind(e.ValueKind)} {RequestBody.Preview(e)}.",
                        $"prompt[{i}]", "invalid_type");
                if ((uint)ids[i] >= (uint)vocab)
                    throw new InvalidRequestException($"'prompt[{i}]' is token id {ids[i]}, outside the vocabulary (0..{vocab - 1}).", $"prompt[{i}]", "invalid_value");
            }
            return new PromptTokens(ids, Array.Empty<int>(), 0);
        }
        throw new InvalidRequestException(
            $"Invalid type for 'prompt': expected a string, got {RequestBody.Kind(p.ValueKind)} {RequestBody.Preview(p)}.", "prompt", "invalid_type");
    }
}
