using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Apb.Serving;
using Microsoft.AspNetCore.Http;

namespace Apb.Server;

/// <summary>
/// Reads a JSON request body into its typed form, turning every way it can be wrong into an
/// <see cref="InvalidRequestException"/> that names the field: too large (413), empty, not JSON (with line and byte),
/// not an object, or a field of the wrong type (with what it should be and what it is).
/// </summary>
static class RequestBody
{
    public static async Task<T> ReadAsync<T>(HttpContext ctx, JsonTypeInfo<T> type, long maxBytes) where T : class
    {
        var body = await ReadBytesAsync(ctx, maxBytes);
        if (body.Length == 0)
            throw new InvalidRequestException("The request body is empty; send a JSON object with Content-Type: application/json.");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(body); }
        catch (JsonException e)
        {
            throw new InvalidRequestException(
                $"We could not parse the JSON body of your request: {Reason(e)} at line {e.LineNumber + 1}, byte " +
                $"{e.BytePositionInLine + 1}. Send a valid JSON object.", code: "invalid_json");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidRequestException(
                    $"The request body is a JSON {Kind(doc.RootElement.ValueKind)}; expected a JSON object like {{\"model\": ..., ...}}.",
                    code: "invalid_json");
            try { return doc.Deserialize(type) ?? throw new InvalidRequestException("The request body is null; expected a JSON object."); }
            catch (JsonException e) { throw WrongType(e, doc.RootElement); }
        }
    }

    static async Task<byte[]> ReadBytesAsync(HttpContext ctx, long maxBytes)
    {
        if (ctx.Request.ContentLength is long declared && declared > maxBytes)
        {
            // A client that is still sending when we answer and close gets a broken pipe instead of our 413: read and
            // drop a body of moderate size first (one many times the limit is cut off, and gets the broken pipe).
            if (declared <= 4 * maxBytes) await DrainAsync(ctx, TimeSpan.FromSeconds(10));
            throw TooLarge(declared, maxBytes);
        }
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        try
        {
            int n;
            while ((n = await ctx.Request.Body.ReadAsync(chunk, ctx.RequestAborted)) > 0)
            {
                if (buffer.Length + n > maxBytes) throw TooLarge(buffer.Length + n, maxBytes);
                buffer.Write(chunk, 0, n);
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw TooLarge(maxBytes + 1, maxBytes);
        }
        return buffer.ToArray();
    }

    static async Task DrainAsync(HttpContext ctx, TimeSpan limit)
    {
        var sizeLimit = ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>();
        if (sizeLimit is { IsReadOnly: false }) sizeLimit.MaxRequestBodySize = null;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        timeout.CancelAfter(limit);
        var chunk = new byte[64 * 1024];
        try { while (await ctx.Request.Body.ReadAsync(chunk, timeout.Token) > 0) { } }
        catch (Exception e) when (e is OperationCanceledException or IOException or BadHttpRequestException) { }
    }

    static InvalidRequestException TooLarge(long size, long max) =>
        new($"The request body {(size > max + 1 ? $"has {size} bytes, more" : "is larger")} than this server accepts " +
            $"({max} bytes; `apb serve --max-request-bytes` raises it).", code: "request_too_large", status: 413);

    // System.Text.Json ends its messages with the position; we say the position our own way.
    static string Reason(JsonException e)
    {
        string m = e.Message;
        int at = m.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (at < 0) at = m.IndexOf(" Path:", StringComparison.Ordinal);
        return (at > 0 ? m[..at] : m).TrimEnd('.', ' ');
    }

    static InvalidRequestException WrongType(JsonException e, JsonElement root)
    {
        string path = e.Path ?? "$";
        string param = path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : path.TrimStart('$');
        var found = Find(root, path);
        string got = found is { } f ? $", got {Kind(f.ValueKind)} {Preview(f)}" : "";
        string expected = Expected(path);
        return new InvalidRequestException($"Invalid type for '{param}': expected {expected}{got}.",
            param.Length == 0 ? null : param, "invalid_type");
    }

    static string Expected(string path)
    {
        if (path.EndsWith(']')) return "an object";
        int dot = path.LastIndexOf('.');
        return path[(dot + 1)..] switch
        {
            "model" or "role" or "name" or "suffix" => "a string",
            "messages" => "an array of message objects",
            "stream" or "include_usage" or "logprobs" or "echo" => "a boolean",
            "max_tokens" or "max_completion_tokens" or "n" or "top_k" or "best_of" => "an integer (32-bit)",
            "seed" => "an integer (64-bit)",
            "temperature" or "top_p" => "a number",
            "stream_options" => "an object",
            _ => "another type",
        };
    }

    // Follows a System.Text.Json error path ("$.messages[1].role", "$['odd key']") to the element it names.
    static JsonElement? Find(JsonElement root, string path)
    {
        var e = root;
        int i = 1;
        while (i < path.Length)
        {
            if (path[i] == '.')
            {
                int end = i + 1;
                while (end < path.Length && path[end] != '.' && path[end] != '[') end++;
                if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(path[(i + 1)..end], out e)) return null;
                i = end;
            }
            else if (path[i] == '[' && i + 1 < path.Length && path[i + 1] == '\'')
            {
                int end = path.IndexOf("']", i, StringComparison.Ordinal);
                if (end < 0 || e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(path[(i + 2)..end], out e)) return null;
                i = end + 2;
            }
            else if (path[i] == '[')
            {
                int end = path.IndexOf(']', i);
                if (end < 0 || !int.TryParse(path.AsSpan(i + 1, end - i - 1), out int index)) return null;
                if (e.ValueKind != JsonValueKind.Array || index >= e.GetArrayLength()) return null;
                e = e[index];
                i = end + 1;
            }
            else return null;
        }
        return e;
    }

    public static string Kind(JsonValueKind k) => k switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "array",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Null => "null",
        _ => "value",
    };

    public static string Preview(JsonElement e)
    {
        if (e.ValueKind is JsonValueKind.Object or JsonValueKind.Array) return "";
        string raw = e.GetRawText();
        return raw.Length <= 40 ? raw : raw[..37] + "...";
    }
}
