using System.Net;
using Apb.Serving;
using Microsoft.AspNetCore.Http;

namespace Apb.Server;

/// <summary>
/// Which web pages may talk to the server. A page the user visits can send requests to a server on their machine; two
/// checks keep it from using or reading this one:
/// <list type="bullet">
/// <item>Host: a name that is not an IP address, localhost, this machine's name or in <see cref="ServerOptions.AllowedHosts"/>
/// is refused (403), which defeats DNS rebinding (a page whose own domain is pointed at 127.0.0.1 sends its domain as Host).</item>
/// <item>Origin: a browser names the page's origin on cross-origin requests; only origins in
/// <see cref="ServerOptions.AllowedOrigins"/> are served, with CORS headers; any other is refused (403) before the
/// request runs. Requests without Origin (curl, SDKs) and from the server's own page (Origin is the server itself) are
/// not affected.</item>
/// </list>
/// The JSON-only body rule (<see cref="RequestBody.CheckContentType"/>) makes every cross-origin POST need a CORS preflight.
/// </summary>
sealed class OriginPolicy
{
    const string Any = "*";
    readonly HashSet<string> _hosts = new(StringComparer.OrdinalIgnoreCase);
    readonly HashSet<string> _origins = new(StringComparer.OrdinalIgnoreCase);

    public OriginPolicy(ServerOptions options)
    {
        _hosts.Add("localhost");
        _hosts.Add(Dns.GetHostName());
        foreach (var h in options.AllowedHosts)
        {
            string host = h.Trim();
            if (host.Length == 0 || host.Contains('/') || (host.Contains(':') && !IPAddress.TryParse(host.Trim('[', ']'), out _)))
                throw new ApbException($"--allowed-hosts entry '{h}' is not a host name: give names as clients write them in URLs, without scheme or port (e.g. my-server.example.com), or * for any");
            _hosts.Add(host);
        }
        foreach (var o in options.AllowedOrigins)
        {
            string origin = o.Trim().TrimEnd('/');
            if (origin is not (Any or "null") && !(Uri.TryCreate(origin, UriKind.Absolute, out var uri)
                    && uri.Scheme is "http" or "https" && uri.PathAndQuery == "/" && origin.StartsWith(uri.Scheme + "://", StringComparison.OrdinalIgnoreCase)))
                throw new ApbException($"--allowed-origins entry '{o}' is not an origin: give scheme://host[:port] as the browser sends it (e.g. http://localhost:3000), or * for any");
            _origins.Add(origin);
        }
    }

    /// <summary>Checks Host and Origin; answers a CORS preflight itself (true: nothing more to do).</summary>
    public bool Handle(HttpContext ctx)
    {
        CheckHost(ctx.Request.Host);
        string? origin = ctx.Request.Headers.Origin;
        if (origin is null || IsSameOrigin(ctx.Request, origin)) return false;
        if (!_origins.Contains(Any) && !_origins.Contains(origin.TrimEnd('/')))
            throw new InvalidRequestException(
                $"Cross-origin request from '{origin}' refused: this server answers web pages only from the origins it is " +
                $"started with (apb serve --allowed-origins {origin}).", code: "origin_not_allowed", status: StatusCodes.Status403Forbidden);
        var headers = ctx.Response.Headers;
        headers.AccessControlAllowOrigin = origin;
        headers.Vary = "Origin";
        if (!HttpMethods.IsOptions(ctx.Request.Method) || ctx.Request.Headers.AccessControlRequestMethod.Count == 0) return false;
        headers.AccessControlAllowMethods = "GET, POST, OPTIONS";
        headers.AccessControlAllowHeaders = ctx.Request.Headers.AccessControlRequestHeaders.Count > 0
            ? ctx.Request.Headers.AccessControlRequestHeaders.ToString() : "Authorization, Content-Type";
        headers.AccessControlMaxAge = "600";
        ctx.Response.StatusCode = StatusCodes.Status204NoContent;
        return true;
    }

    // Browsers send Origin on every POST, also from the server's own page (GET /). A page served under a Host that names
    // this server (not one let in by --allowed-hosts *, which a rebound domain could be) has the server's own origin.
    bool IsSameOrigin(HttpRequest request, string origin) =>
        request.Host.HasValue && Names(request.Host.Host)
        && string.Equals(origin.TrimEnd('/'), $"{request.Scheme}://{request.Host.Value}", StringComparison.OrdinalIgnoreCase);

    bool Names(string host) => IPAddress.TryParse(host.Trim('[', ']'), out _) || _hosts.Contains(host.TrimEnd('.'));

    void CheckHost(HostString host)
    {
        // HTTP/1.0 may leave Host out; browsers always send it.
        if (!host.HasValue || _hosts.Contains(Any)) return;
        string name = host.Host;
        if (Names(name)) return;
        throw new InvalidRequestException(
            $"Host '{name}' is not a name this server answers to (its IP addresses, localhost, {Dns.GetHostName()}): a web page " +
            $"can point its own domain at this machine (DNS rebinding). Start the server with --allowed-hosts {name} if clients " +
            "really reach it by that name.", code: "host_not_allowed", status: StatusCodes.Status403Forbidden);
    }
}
