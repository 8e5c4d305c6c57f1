using System.Text.Json;
using Apb.Serving;
using Apb.Tokenization;
using Microsoft.AspNetCore.Http;

namespace Apb.Server;

/// <summary>
/// vLLM's POST /tokenize ({"prompt"} or {"messages"} in, {"tokens", "count", "max_model_len"} out) and POST /detokenize
/// ({"tokens"} in, {"prompt"} out), on the served model's tokenizer. Messages are rendered and encoded exactly as
/// /v1/chat/completions feeds them to the model.
/// </summary>
public sealed class TokenizeEndpoints(InferenceRunner runner, ServerOptions options)
{
    public async Task TokenizeAsync(HttpContext ctx, CancellationTokenSource _)
    {
        var model = runner.Model;
        RequestBody.CheckContentType(ctx);
        var req = await RequestBody.ReadAsync(ctx, ServerJson.Api.TokenizeRequest, options.RequestBytesFor(model.MaxPositions));
        RequestFields.CheckUnknown(req.Unknown, "model, prompt, messages, add_special_tokens, add_generation_prompt, chat_template_kwargs");
        RequestFields.CheckModel(req.Model, model);
        IReadOnlyList<int> ids;
        if (req.Prompt is not null && req.Messages is not null)
            throw new InvalidRequestException("Give either 'prompt' (text) or 'messages' (a conversation), not both.", "prompt", "invalid_value");
        if (req.Prompt is { } prompt)
            ids = model.Tokenizer.Encode(prompt, req.AddSpecialTokens ?? true);
        else if (req.Messages is not null)
        {
            var messages = ChatCompletions.Messages(req.Messages);
            var tokenizer = WithTemplateArguments(model.Tokenizer, req.ChatTemplateKwargs);
            string text;
            try { text = tokenizer.ChatTemplate.Render(messages, req.AddGenerationPrompt ?? true); }
            catch (ApbException e) when (e is not InvalidRequestException) { throw new InvalidRequestException(e.Message, "messages"); }
            ids = tokenizer.Encode(text, req.AddSpecialTokens ?? tokenizer.ChatTemplate.EncodeWithSpecialTokens);
        }
        else
            throw new InvalidRequestException("Missing required parameter: 'prompt' (text) or 'messages' (a conversation).",
                "prompt", "missing_required_parameter");
        await HttpJson.WriteAsync(ctx, new TokenizeResponse(ids.Count, model.MaxPositions, ids), ServerJson.Api.TokenizeResponse);
    }

    public async Task DetokenizeAsync(HttpContext ctx, CancellationTokenSource _)
    {
        var model = runner.Model;
        RequestBody.CheckContentType(ctx);
        var req = await RequestBody.ReadAsync(ctx, ServerJson.Api.DetokenizeRequest, options.RequestBytesFor(model.MaxPositions));
        RequestFields.CheckUnknown(req.Unknown, "model, tokens");
        RequestFields.CheckModel(req.Model, model);
        var tokens = req.Tokens ?? throw new InvalidRequestException("Missing required parameter: 'tokens' (an array of token ids).",
            "tokens", "missing_required_parameter");
        int vocab = model.Tokenizer.VocabSize;
        for (int i = 0; i < tokens.Count; i++)
            if (tokens[i] < 0 || tokens[i] >= vocab || model.Tokenizer.IdToToken(tokens[i]) is null)
                throw new InvalidRequestException($"'tokens[{i}]' is {tokens[i]}, which is not a token id of this model (0..{vocab - 1}).",
                    $"tokens[{i}]", "invalid_value");
        await HttpJson.WriteAsync(ctx, new DetokenizeResponse(model.Tokenizer.Decode(tokens)), ServerJson.Api.DetokenizeResponse);
    }

    /// <summary>The tokenizer with a request's chat_template_kwargs applied to its template (itself without them).</summary>
    public static HfTokenizer WithTemplateArguments(HfTokenizer tokenizer, JsonElement? kwargs)
    {
        if (kwargs is not { } k || k.ValueKind == JsonValueKind.Null) return tokenizer;
        try
        {
            return tokenizer.WithChatTemplate(tokenizer.ChatTemplate.WithArguments(JinjaChatTemplate.ArgumentsFromJson(k, "'chat_template_kwargs'")));
        }
        catch (ApbException e) when (e is not InvalidRequestException)
        {
            throw new InvalidRequestException(e.Message, "chat_template_kwargs", "invalid_value");
        }
        catch (InvalidOperationException) { throw RequestBody.NotText("chat_template_kwargs"); }
    }

    /// <summary>A JSON list of OpenAI-style messages (the CLI's --messages file), checked as a request's "messages".</summary>
    public static IReadOnlyList<ChatMessage> ParseMessages(string json, string source)
    {
        List<ChatMessageRequest?>? list;
        try { list = JsonSerializer.Deserialize(json, ServerJson.Api.ListChatMessageRequest); }
        catch (JsonException e)
        {
            throw new ApbException($"{source}: {e.Message}; expected a JSON list of messages such as " +
                                   "[{\"role\": \"user\", \"content\": \"Hello\"}].");
        }
        return ChatCompletions.Messages(list);
    }
}

public sealed class TokenizeRequest
{
    public string? Model { get; set; }
    public string? Prompt { get; set; }
    public List<ChatMessageRequest?>? Messages { get; set; }
    public bool? AddSpecialTokens { get; set; }
    public bool? AddGenerationPrompt { get; set; }
    public JsonElement? ChatTemplateKwargs { get; set; }
    [System.Text.Json.Serialization.JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
}

public sealed record TokenizeResponse(int Count, int MaxModelLen, IReadOnlyList<int> Tokens);

public sealed class DetokenizeRequest
{
    public string? Model { get; set; }
    public List<int>? Tokens { get; set; }
    [System.Text.Json.Serialization.JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
}

public sealed record DetokenizeResponse(string Prompt);
