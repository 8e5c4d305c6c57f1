using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Http;

namespace Apb.Server;

/// <summary>Whole JSON responses, serialized up front so they carry a Content-Length.</summary>
static class HttpJson
{
    public static Task WriteAsync<T>(HttpContext ctx, T value, JsonTypeInfo<T> type, int status = StatusCodes.Status200OK)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(value, type);
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        ctx.Response.ContentLength = bytes.Length;
        return ctx.Response.Body.WriteAsync(bytes).AsTask();
    }
}
