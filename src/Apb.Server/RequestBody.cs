using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Apb.Serving;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;

namespace Apb.Server;

/// <summary>
/// Reads a JSON request body into its typed form, turning every way it can be wrong into an
/// <see cref="InvalidRequestException"/> that names the field: not declared as JSON (415), too large (413), too slow
/// (408), empty, not UTF-8, not JSON (with line and byte), not an object, a field of the wrong type (with what it should
/// be and what it is), or a string that is not Unicode text (an escaped lone surrogate).
/// </summary>
static class RequestBody
{
    /// <summary>
    /// Only application/json is read. A browser sends text/plain, form or multipart bodies to another origin without
    /// asking first (no CORS preflight), so accepting them would let any web page its user visits start generations here.
    /// </summary>
    public static void CheckContentType(HttpContext ctx)
    {
        string? declared = ctx.Request.ContentType;
        if (MediaTypeHeaderValue.TryParse(declared, out var media) && media.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase)
            && (media.Charset.Length == 0 || media.Charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase)))
            return;
        throw new InvalidRequestException(
            $"Content-Type is {(declared is null ? "missing" : $"'{declared}'")}; this server reads JSON bodies only: send " +
            "'Content-Type: application/json' (UTF-8), e.g. curl -H 'Content-Type: application/json'.",
            code: "unsupported_media_type", status: StatusCodes.Status415UnsupportedMediaType);
    }

    /// <summary>HttpContext.Items key: the body's length in bytes, once read.</summary>
    public const string BytesRead = "apb.body-bytes";

    public static async Task<T> ReadAsync<T>(HttpContext ctx, JsonTypeInfo<T> type, long maxBytes) where T : class
    {
        var body = await ReadBytesAsync(ctx, maxBytes);
        ctx.Items[BytesRead] = (long)body.Length;
        if (body.Length == 0)
            throw new InvalidRequestException("The request body is empty; send a JSON object with Content-Type: application/json.");
        // JsonDocument accepts some invalid UTF-8 inside strings and fails only when they are read, far from the cause.
        if (InvalidUtf8At(body) is int bad)
            throw new InvalidRequestException(
                $"The request body is not valid UTF-8 (byte {bad + 1} of {body.Length} starts an invalid sequence); JSON must be sent as UTF-8.",
                code: "invalid_json");
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

    /// <summary>The text of a JSON string; an escaped lone surrogate ("\ud800") is not text and is refused naming <paramref name="param"/>.</summary>
    public static string Text(JsonElement e, string param)
    {
        try { return e.GetString()!; }
        catch (InvalidOperationException) { throw NotText(param); }
    }

    public static InvalidRequestException NotText(string param) => new(
        $"'{param}' holds an escaped lone surrogate (such as \\ud800 without the \\udc00..\\udfff that completes it), " +
        "which is not Unicode text. Escape characters outside the BMP as a full pair, or send them as UTF-8.",
        param.Length == 0 ? null : param, "invalid_value");

    static bool IsText(JsonElement e)
    {
        try { e.GetString(); return true; }
        catch (InvalidOperationException) { return false; }
    }

    static int? InvalidUtf8At(byte[] body)
    {
        if (System.Text.Unicode.Utf8.IsValid(body)) return null;
        var rest = body.AsSpan();
        while (Rune.DecodeFromUtf8(rest, out _, out int used) == System.Buffers.OperationStatus.Done) rest = rest[used..];
        return body.Length - rest.Length;
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
        // Sized by the declared length up to 1 MiB: a client that declares 64 MB and sends nothing gets no 64 MB buffer.
        using var buffer = new MemoryStream((int)Math.Min(ctx.Request.ContentLength ?? 0, Math.Min(maxBytes, 1 << 20)));
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
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status408RequestTimeout)
        {
            throw new InvalidRequestException(
                $"The request body arrived too slowly ({buffer.Length} bytes before the server stopped waiting; Kestrel's " +
                "minimum is 240 bytes/s after a 5 s grace). Send the body at once.", code: "request_timeout", status: StatusCodes.Status408RequestTimeout);
        }
        catch (BadHttpRequestException e)
        {
            // A malformed body framing (bad chunk sizes, a body shorter than its Content-Length): Kestrel's words, our shape.
            throw new InvalidRequestException($"The request body could not be read: {e.Message}", code: "invalid_request", status: e.StatusCode);
        }
        // GetBuffer avoids a second copy when the declared length was right (the usual case).
        return buffer.Length == buffer.Capacity ? buffer.GetBuffer() : buffer.ToArray();
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

    static string Param(JsonException e)
    {
        string path = e.Path ?? "$";
        return path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : path.TrimStart('$');
    }

    static InvalidRequestException WrongType(JsonException e, JsonElement root)
    {
        string path = e.Path ?? "$";
        string param = Param(e);
        var found = Find(root, path);
        // A string where a string belongs that still fails to convert holds an escaped lone surrogate.
        if (found is { ValueKind: JsonValueKind.String } text && !IsText(text)) return NotText(param);
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
            "model" or "role" or "name" or "suffix" or "user" or "prompt" => "a string",
            "messages" => "an array of message objects",
            "stream" or "include_usage" or "echo" or "add_special_tokens" or "add_generation_prompt" => "a boolean",
            // Chat's logprobs is a boolean, the legacy completions' an integer (how many alternatives).
            "logprobs" => "a boolean (chat) or an integer 0..20 (completions)",
            "max_tokens" or "max_completion_tokens" or "n" or "top_k" or "best_of" or "top_logprobs" => "an integer (32-bit)",
            "seed" => "an integer (64-bit)",
            "temperature" or "top_p" or "frequency_penalty" or "presence_penalty" => "a number",
            "tokens" => "an array of token ids",
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
