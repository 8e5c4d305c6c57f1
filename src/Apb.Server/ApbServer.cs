using System.Net;
using Apb.Serving;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Apb.Server;

/// <summary>
/// An OpenAI-compatible HTTP server over one <see cref="ServedModel"/>, on ASP.NET Core's Kestrel with minimal
/// routing (the slim builder: no HTTPS, no MVC; Native AOT friendly). Start it, read <see cref="Address"/>, dispose
/// it to stop. Which engine answers is the model's <see cref="SessionFactory"/>: a sequence-parallel strategy plugs
/// in there without a change here.
/// </summary>
public sealed class ApbServer : IAsyncDisposable
{
    readonly WebApplication _app;

    ApbServer(WebApplication app, InferenceRunner runner, ServerMetrics metrics, Uri address)
    {
        _app = app; Runner = runner; Metrics = metrics; Address = address;
    }

    /// <summary>The bound address, e.g. http://127.0.0.1:8000/ (the real port when options asked for 0).</summary>
    public Uri Address { get; }
    public InferenceRunner Runner { get; }
    public ServerMetrics Metrics { get; }

    public static async Task<ApbServer> StartAsync(ServedModel model, ServerOptions options, CancellationToken cancel = default)
    {
        var ip = ParseHost(options.Host);
        if (options.Port is < 0 or > 65535) throw new ApbException($"--port must be 0..65535, got {options.Port}");
        var origins = new OriginPolicy(options);
        var apiKey = options.ApiKey is { } key ? new ApiKeyCheck(key) : null;
        var runner = new InferenceRunner(model, options.Concurrency, options.MaxQueue);
        var metrics = new ServerMetrics(model.Engine.Load);
        runner.Completed += metrics.Observe;

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            // Our own reader enforces the limit with an OpenAI-style 413; Kestrel's is a backstop just above it.
            k.Limits.MaxRequestBodySize = options.RequestBytesFor(model.MaxPositions) + 1;
            RequestLimits.Configure(k.Limits);
            k.Listen(ip, options.Port);
        });
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(5));
        var app = builder.Build();
        new ApiRoutes(runner, metrics, options, origins, apiKey, app.Lifetime.ApplicationStopping).Map(app);
        try
        {
            await app.StartAsync(cancel);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            await app.DisposeAsync();
            var socket = e as System.Net.Sockets.SocketException ?? e.InnerException as System.Net.Sockets.SocketException;
            string advice = socket?.SocketErrorCode switch
            {
                System.Net.Sockets.SocketError.AddressNotAvailable =>
                    "that address is not one of this machine's: give one of its own (`ip addr` lists them), 127.0.0.1 or 0.0.0.0",
                System.Net.Sockets.SocketError.AccessDenied => "ports below 1024 need privileges: pick a --port of 1024 or more",
                _ => "is another server using the port? Pick another --port",
            };
            throw new ApbException($"cannot listen on {options.Host}:{options.Port}: {e.Message}; {advice}.", e);
        }
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault()
                    ?? $"http://{options.Host}:{options.Port}";
        return new ApbServer(app, runner, metrics, new Uri(bound.EndsWith('/') ? bound : bound + "/"));
    }

    /// <summary>Completes when the host stops (Ctrl+C / SIGTERM, or <see cref="DisposeAsync"/>).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancel = default) => _app.WaitForShutdownAsync(cancel);

    /// <summary>Stops listening and lets the requests in flight end (up to the host's shutdown timeout).</summary>
    public Task StopAsync() => _app.StopAsync();

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    /// <summary>
    /// What `apb serve` warns about before it listens beyond this machine with no API key (anyone who reaches the port
    /// may use the model); null when the address is loopback or a key is set.
    /// </summary>
    public static string? ExposureWarning(ServerOptions options) =>
        options.ApiKey is null && !IPAddress.IsLoopback(ParseHost(options.Host))
            ? $"warning: listening on {options.Host}, reachable from other machines, with no API key: anyone who reaches port " +
              $"{options.Port} can use the model. Set APB_API_KEY (or --api-key) to require \"Authorization: Bearer KEY\", or listen on 127.0.0.1."
            : null;

    static IPAddress ParseHost(string host)
    {
        if (host == "localhost") return IPAddress.Loopback;
        if (IPAddress.TryParse(host.Trim('[', ']'), out var ip)) return ip;
        throw new ApbException($"--host '{host}' is not an IP address; give one such as 127.0.0.1 (this machine only), 0.0.0.0 (every interface) or ::1, or localhost");
    }
}
