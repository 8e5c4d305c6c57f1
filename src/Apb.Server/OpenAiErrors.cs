using Microsoft.AspNetCore.Http;

namespace Apb.Server;

/// <summary>Error bodies in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.</summary>
static class OpenAiErrors
{
    public const string InvalidRequest = "invalid_request_error";
    public const string ServerError = "server_error";

    public static ErrorResponse Body(string message, string type, string? param = null, string? code = null) =>
        new(new ErrorBody(message, type, param, code));

    public static Task WriteAsync(HttpContext ctx, int status, string message, string type, string? param = null, string? code = null) =>
        HttpJson.WriteAsync(ctx, Body(message, type, param, code), ServerJson.Api.ErrorResponse, status);
}
