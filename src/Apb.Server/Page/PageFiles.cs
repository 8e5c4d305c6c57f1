using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Apb.Server.Page;

/// <summary>
/// GET / : the document question-answering page, and the two files it loads. They are resources of this assembly (no
/// files on disk, nothing fetched from elsewhere; Native AOT keeps manifest resources), read once. The page talks to
/// the API of the server that served it, so its requests are same-origin (<see cref="OriginPolicy"/>).
/// </summary>
static class PageFiles
{
    static readonly (string Path, string Resource, string ContentType)[] Files =
    [
        ("/", "page/index.html", "text/html; charset=utf-8"),
        ("/page.css", "page/page.css", "text/css; charset=utf-8"),
        ("/page.js", "page/page.js", "text/javascript; charset=utf-8"),
    ];

    // Scripts and styles only from this server, no inline code, requests only to it, never inside a frame.
    const string Policy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
                          "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    public static void Map(WebApplication app, Func<Func<HttpContext, CancellationTokenSource, Task>, RequestDelegate> guarded)
    {
        foreach (var (path, resource, type) in Files)
        {
            var bytes = Read(resource);
            app.MapGet(path, guarded((ctx, _) =>
            {
                var h = ctx.Response.Headers;
                ctx.Response.ContentType = type;
                ctx.Response.ContentLength = bytes.Length;
                h.CacheControl = "no-cache";
                h.ContentSecurityPolicy = Policy;
                h.XContentTypeOptions = "nosniff";
                h["Referrer-Policy"] = "no-referrer";
                return ctx.Response.Body.WriteAsync(bytes).AsTask();
            }));
        }
    }

    static byte[] Read(string resource)
    {
        using var stream = typeof(PageFiles).Assembly.GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"the page's resource '{resource}' is not in {typeof(PageFiles).Assembly.GetName().Name}: the build lost Page/*");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
