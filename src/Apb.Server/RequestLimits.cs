using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Apb.Server;

/// <summary>
/// Limits on the request line and headers (Kestrel's defaults), checked here so that a request past them gets an
/// OpenAI-style JSON error (414, 431). Kestrel's own limits, which answer with an empty body, sit well above them as a
/// backstop for requests too large to be worth a JSON answer.
/// </summary>
static class RequestLimits
{
    public const int MaxTargetBytes = 8 * 1024;
    public const int MaxHeaderBytes = 32 * 1024;
    public const int MaxHeaderCount = 100;

    public static void Configure(KestrelServerLimits k)
    {
        k.MaxRequestLineSize = 8 * MaxTargetBytes;
        k.MaxRequestHeadersTotalSize = 4 * MaxHeaderBytes;
        k.MaxRequestHeaderCount = 10 * MaxHeaderCount;
    }

    public static void Check(HttpContext ctx)
    {
        string target = ctx.Features.Get<IHttpRequestFeature>()?.RawTarget ?? ctx.Request.Path + ctx.Request.QueryString;
        if (target.Length > MaxTargetBytes)
            throw new Apb.Serving.InvalidRequestException(
                $"The request URL has {target.Length} characters, more than this server accepts ({MaxTargetBytes}); the API's URLs are short: send data in a JSON body.",
                code: "uri_too_long", status: StatusCodes.Status414UriTooLong);
        int count = 0;
        long bytes = 0;
        foreach (var (name, values) in ctx.Request.Headers)
            foreach (var v in values)
            {
                count++;
                bytes += name.Length + (v?.Length ?? 0) + 4; // "name: value\r\n"
            }
        if (count > MaxHeaderCount || bytes > MaxHeaderBytes)
            throw new Apb.Serving.InvalidRequestException(
                $"The request has {count} header line(s) of {bytes} bytes in all; this server accepts at most {MaxHeaderCount} lines " +
                $"and {MaxHeaderBytes} bytes. Send fewer or shorter headers (large cookies are the usual cause).",
                code: "request_header_fields_too_large", status: StatusCodes.Status431RequestHeaderFieldsTooLarge);
    }
}
