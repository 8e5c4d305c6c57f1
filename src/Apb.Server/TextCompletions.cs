using System.Diagnostics;
using System.Text.Json;
using Apb.Engine;
using Apb.Serving;
using Microsoft.AspNetCore.Http;

namespace Apb.Server;

/// <summary>POST /v1/completions: raw text (no chat template) in, its continuation out (whole or streamed).</summary>
sealed class TextCompletions(InferenceRunner runner, ServerOptions options)
{
    const string Known = "model, prompt, stream, stream_options, max_tokens, temperature, top_p, top_k, seed, stop, n, " +
        "best_of (= n), echo (false), frequency_penalty, presence_penalty, logit_bias, logprobs, suffix (null), user, apb_timings";

    public async Task HandleAsync(HttpContext ctx, CancellationTokenSource cancel)
    {
        long arrived = Stopwatch.GetTimestamp();
        var log = RequestLog.Of(ctx);
        log.Completion();
        RequestBody.CheckContentType(ctx);
        // A place in line before the body is read: a full server refuses a large request without holding it.
        using var admission = runner.Queue.Admit();
        var r = await ReadAsync(ctx, arrived);
        log.Read(r.Jobs[0].Prompt.Count, r.User);
        await admission.EnterAsync(cancel.Token);

        var model = runner.Model;
        string id = "cmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        TextLogprobs? Logprobs(CompletionResult c) => r.Logprobs && c.Logprobs is { } l ? LogprobShapes.Text(model.Tokenizer, l) : null;
        TextCompletionResponse Body(IReadOnlyList<TextChoice> choices, Usage? usage) => new(id, "text_completion", created, model.Id, choices, usage);
        if (!r.Stream)
        {
            var results = await ChoiceRuns.RunAsync(runner, admission, r.Jobs, null, cancel.Token);
            log.Finished(results);
            await HttpJson.WriteAsync(ctx, Body(results.Select((c, i) => new TextChoice(c.Text, i, Logprobs(c), c.FinishReason)).ToArray(),
                Usage.Of(results)) with { Timings = CompletionTimings.For(r.Jobs[0], results[0]) }, ServerJson.Api.TextCompletionResponse);
            return;
        }

        var events = new EventStream(ctx.Response);
        var type = ServerJson.Api.TextCompletionResponse;
        await events.StartAsync(cancel.Token);
        var done = await EventStream.PumpAsync(runner, admission, r.Jobs,
            (i, text) => events.WriteAsync(Body([new TextChoice(text, i, null, null)], null), type, cancel.Token), cancel);
        // A choice's logprobs come whole with its last chunk (the one that carries its finish_reason).
        for (int i = 0; i < done.Length; i++)
            await events.WriteAsync(Body([new TextChoice("", i, Logprobs(done[i]), done[i].FinishReason)], null)
                with { Timings = i == 0 ? CompletionTimings.For(r.Jobs[0], done[0]) : null }, type, cancel.Token);
        if (r.IncludeUsage) await events.WriteAsync(Body([], Usage.Of(done)), type, cancel.Token);
        log.Finished(done);
        await events.DoneAsync(cancel.Token);
    }

    sealed record Request(IReadOnlyList<CompletionJob> Jobs, bool Stream, bool IncludeUsage, bool Logprobs, string? User);

    // Everything that can refuse the request, before it takes a run slot; only the jobs outlive it (see ChatCompletions).
    async Task<Request> ReadAsync(HttpContext ctx, long arrived)
    {
        var model = runner.Model;
        var req = await RequestBody.ReadAsync(ctx, ServerJson.Api.CompletionRequest, options.RequestBytesFor(model.MaxPositions));
        RequestFields.CheckUnknown(req.Unknown, Known);
        RequestFields.CheckModel(req.Model, model);
        int n = RequestFields.Choices(req.N);
        if (req.BestOf is int best && best != n)
            throw RequestFields.Unsupported("best_of", $"it is {best}; this server returns every candidate it generates (best_of = n = {n}). Use n.");
        if (req.Echo == true)
            throw RequestFields.Unsupported("echo", "leave it out or set it to false.");
        if (req.Suffix is not null)
            throw RequestFields.Unsupported("suffix", "insertion needs a fill-in-the-middle model; leave it out.");
        int? top = req.Logprobs is int l ? RequestFields.TopLogprobs(l, "logprobs") : null;
        var stop = RequestFields.Stop(req.Stop);
        var sampling = RequestFields.Sampling(req.Temperature, req.TopP, req.TopK, req.Seed, req.FrequencyPenalty, req.PresencePenalty,
            req.LogitBias, model.Tokenizer.VocabSize, top);
        var prompt = RequestPrompt.Build(model, limit => PromptOf(req.Prompt, model, limit), "prompt");
        int maxNew = TokenBudget.Resolve(model.MaxPositions, prompt.Count, req.MaxTokens, options.DefaultCompletionMaxTokens,
            promptParam: "prompt");
        model.Engine.Check(prompt, maxNew);
        var job = new CompletionJob(prompt, sampling with { MaxNewTokens = maxNew }, stop) { ArrivedAt = arrived, Timings = req.ApbTimings == true };
        return new Request(ChoiceRuns.Jobs(job, n), req.Stream == true, RequestFields.IncludeUsage(req.StreamOptions), top is not null, req.User);
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
