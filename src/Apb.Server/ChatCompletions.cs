using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Apb.Engine;
using Apb.Serving;
using Apb.Tokenization;
using Microsoft.AspNetCore.Http;

namespace Apb.Server;

/// <summary>POST /v1/chat/completions: a conversation in, the assistant's reply out (whole or streamed).</summary>
sealed class ChatCompletions(InferenceRunner runner, ServerOptions options)
{
    static readonly string[] Roles = ["system", "developer", "user", "assistant", "tool"];

    const string Known = "model, messages, stream, stream_options, max_tokens, max_completion_tokens, temperature, top_p, top_k, " +
        "seed, stop, n, frequency_penalty, presence_penalty, logit_bias, logprobs, top_logprobs, response_format (text), " +
        "tools (empty), tool_choice (none), user, chat_template_kwargs, apb_timings";

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
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        ChatLogprobs? Logprobs(CompletionResult c) =>
            r.Logprobs && c.Logprobs is { } l ? LogprobShapes.Chat(model.Tokenizer, l) : null;
        if (!r.Stream)
        {
            var results = await ChoiceRuns.RunAsync(runner, admission, r.Jobs, null, cancel.Token);
            var body = new ChatCompletionResponse(id, "chat.completion", created, model.Id,
                results.Select((c, i) => new ChatChoice(i, new AssistantMessage("assistant", c.Text), Logprobs(c), c.FinishReason)).ToArray(),
                Usage.Of(results)) { Timings = CompletionTimings.For(r.Jobs[0], results[0]) };
            log.Finished(results);
            await HttpJson.WriteAsync(ctx, body, ServerJson.Api.ChatCompletionResponse);
            return;
        }

        var events = new EventStream(ctx.Response);
        ChatCompletionChunk Chunk(int index, ChatDelta delta, ChatLogprobs? logprobs, string? finish) =>
            new(id, "chat.completion.chunk", created, model.Id, [new ChatChunkChoice(index, delta, logprobs, finish)], null);
        var type = ServerJson.Api.ChatCompletionChunk;
        await events.StartAsync(cancel.Token);
        for (int i = 0; i < r.Jobs.Count; i++) await events.WriteAsync(Chunk(i, new ChatDelta("assistant", ""), null, null), type, cancel.Token);
        var done = await EventStream.PumpAsync(runner, admission, r.Jobs,
            (i, text) => events.WriteAsync(Chunk(i, new ChatDelta(null, text), null, null), type, cancel.Token), cancel);
        // A choice's logprobs come whole with its last chunk (the one that carries its finish_reason).
        for (int i = 0; i < done.Length; i++)
            await events.WriteAsync(Chunk(i, new ChatDelta(null, null), Logprobs(done[i]), done[i].FinishReason)
                with { Timings = i == 0 ? CompletionTimings.For(r.Jobs[0], done[0]) : null }, type, cancel.Token);
        if (r.IncludeUsage)
            await events.WriteAsync(new ChatCompletionChunk(id, "chat.completion.chunk", created, model.Id, [], Usage.Of(done)), type, cancel.Token);
        log.Finished(done);
        await events.DoneAsync(cancel.Token);
    }

    sealed record Request(IReadOnlyList<CompletionJob> Jobs, bool Stream, bool IncludeUsage, bool Logprobs, string? User);

    // Everything that can refuse the request, before it takes a run slot. Only the jobs (token ids) outlive this method:
    // the body, the parsed request and its strings are garbage once it returns, however long the generation runs.
    async Task<Request> ReadAsync(HttpContext ctx, long arrived)
    {
        var model = runner.Model;
        var req = await RequestBody.ReadAsync(ctx, ServerJson.Api.ChatCompletionRequest, options.RequestBytesFor(model.MaxPositions));
        RequestFields.CheckUnknown(req.Unknown, Known);
        RequestFields.CheckModel(req.Model, model);
        int n = RequestFields.Choices(req.N);
        if (req.Tools is { ValueKind: JsonValueKind.Array } tools && tools.GetArrayLength() > 0)
            throw RequestFields.Unsupported("tools", "this server generates plain text and calls no tools. Remove the tools.");
        if (req.ToolChoice is { } choice && choice.ValueKind != JsonValueKind.Null
            && !(choice.ValueKind == JsonValueKind.String && choice.GetString() is "none" or "auto"))
            throw RequestFields.Unsupported("tool_choice", "this server calls no tools; leave tool_choice out or set it to \"none\".");
        RequestFields.CheckResponseFormat(req.ResponseFormat);
        int? top = null;
        if (req.TopLogprobs is not null && req.Logprobs != true)
            throw new InvalidRequestException("'top_logprobs' needs 'logprobs': true.", "top_logprobs", "invalid_value");
        if (req.Logprobs == true) top = RequestFields.TopLogprobs(req.TopLogprobs ?? 0, "top_logprobs");
        var stop = RequestFields.Stop(req.Stop);
        var messages = Messages(req.Messages);
        var sampling = RequestFields.Sampling(req.Temperature, req.TopP, req.TopK, req.Seed, req.FrequencyPenalty, req.PresencePenalty,
            req.LogitBias, model.Tokenizer.VocabSize, top);

        // APB's cut (PromptTokens.FromChat): the last user message up to its last blank line is the document (context,
        // spread over ranks), its final paragraph the question (query, given to every rank).
        var tokenizer = TokenizeEndpoints.WithTemplateArguments(model.Tokenizer, req.ChatTemplateKwargs);
        var prompt = RequestPrompt.Build(model, limit => PromptTokens.FromChat(tokenizer, messages, limit), "messages");
        string param = req.MaxCompletionTokens is null ? "max_tokens" : "max_completion_tokens";
        int maxNew = TokenBudget.Resolve(model.MaxPositions, prompt.Count, req.MaxCompletionTokens ?? req.MaxTokens, options.DefaultMaxTokens, param);
        model.Engine.Check(prompt, maxNew); // memory: what could never fit is refused now, not after the wait in line
        var job = new CompletionJob(prompt, sampling with { MaxNewTokens = maxNew }, stop) { ArrivedAt = arrived, Timings = req.ApbTimings == true };
        return new Request(ChoiceRuns.Jobs(job, n), req.Stream == true, RequestFields.IncludeUsage(req.StreamOptions), top is not null, req.User);
    }

    internal static List<ChatMessage> Messages(List<ChatMessageRequest?>? messages)
    {
        if (messages is null)
            throw new InvalidRequestException("Missing required parameter: 'messages' (an array of {\"role\", \"content\"} objects).", "messages", "missing_required_parameter");
        if (messages.Count == 0)
            throw new InvalidRequestException("'messages' is empty; give at least one message, e.g. [{\"role\": \"user\", \"content\": \"Hello\"}].", "messages", "empty_array");
        var list = new List<ChatMessage>(messages.Count);
        for (int i = 0; i < messages.Count; i++)
        {
            var m = messages[i] ?? throw new InvalidRequestException($"'messages[{i}]' is null; expected a {{\"role\", \"content\"}} object.", $"messages[{i}]", "invalid_type");
            if (m.Role is null)
                throw new InvalidRequestException($"Missing required parameter: 'messages[{i}].role'.", $"messages[{i}].role", "missing_required_parameter");
            if (!Roles.Contains(m.Role))
                throw new InvalidRequestException(
                    $"Invalid value for 'messages[{i}].role': '{m.Role}'. Supported roles: {string.Join(", ", Roles)}.",
                    $"messages[{i}].role", "invalid_value");
            // OpenAI's "developer" is the newer name of "system"; the models' templates know only the latter.
            string role = m.Role == "developer" ? "system" : m.Role;
            list.Add(new ChatMessage(role, Content(m.Content, role, i)));
        }
        return list;
    }

    // A string, or an array of content parts of which only {"type": "text", "text": ...} are served here.
    static string Content(JsonElement? content, string role, int i)
    {
        string param = $"messages[{i}].content";
        if (content is not { } c || c.ValueKind == JsonValueKind.Null)
        {
            // An assistant turn that only called tools has no content.
            if (role == "assistant") return "";
            throw new InvalidRequestException($"Missing required parameter: '{param}' (a {role} message needs text).", param, "missing_required_parameter");
        }
        if (c.ValueKind == JsonValueKind.String) return RequestBody.Text(c, param);
        if (c.ValueKind != JsonValueKind.Array)
            throw new InvalidRequestException(
                $"Invalid type for '{param}': expected a string or an array of content parts, got {RequestBody.Kind(c.ValueKind)} {RequestBody.Preview(c)}.",
                param, "invalid_type");
        var text = new StringBuilder();
        int j = 0;
        foreach (var part in c.EnumerateArray())
        {
            string p = $"{param}[{j}]";
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                throw new InvalidRequestException($"Invalid content part '{p}': expected an object like {{\"type\": \"text\", \"text\": \"...\"}}.", p, "invalid_type");
            string kind = RequestBody.Text(type, $"{p}.type");
            if (kind != "text")
                throw new InvalidRequestException($"'{p}' has type '{kind}'; this server reads text parts only.", $"{p}.type", "invalid_value");
            if (!part.TryGetProperty("text", out var t) || t.ValueKind != JsonValueKind.String)
                throw new InvalidRequestException($"Invalid content part '{p}': 'text' must be a string.", $"{p}.text", "invalid_type");
            // Parts are joined by a newline, as vLLM does, so "part 1" "part 2" do not run together.
            if (j > 0) text.Append('\n');
            text.Append(RequestBody.Text(t, $"{p}.text"));
            j++;
        }
        return text.ToString();
    }
}
