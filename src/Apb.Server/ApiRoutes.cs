using System.Diagnostics;
using Apb.Serving;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Apb.Server;

/// <summary>
/// The HTTP surface: OpenAI's /v1 routes plus /health, /metrics and the page at / (<see cref="Page.PageFiles"/>). Handlers are plain RequestDelegates (no
/// reflection-based parameter binding, so Native AOT needs no request-delegate generator), each run inside
/// <see cref="Guarded"/>: whatever a request does wrong or whatever goes wrong while serving it ends as an
/// OpenAI-style error for that request alone, never as a crash of the server.
/// </summary>
sealed class ApiRoutes(InferenceRunner runner, ServerMetrics metrics, ServerOptions options, OriginPolicy origins, ApiKeyCheck? apiKey,
    CancellationToken stopping)
{
    const string Aborted = "apb.aborted";
    readonly ChatCompletions _chat = new(runner, options);
    readonly TextCompletions _text = new(runner, options);
    readonly TokenizeEndpoints _tokenize = new(runner, options);

    public void Map(WebApplication app)
    {
        app.Use(CountAndLog);
        app.MapGet("/v1/models", Guarded(Models));
        app.MapGet("/v1/models/{id}", Guarded(Model));
        app.MapPost("/v1/chat/completions", Guarded(_chat.HandleAsync));
        app.MapPost("/v1/completions", Guarded(_text.HandleAsync));
        app.MapPost("/tokenize", Guarded(_tokenize.TokenizeAsync));
        app.MapPost("/detokenize", Guarded(_tokenize.DetokenizeAsync));
        app.MapGet("/health", Guarded(Health));
        app.MapGet("/metrics", Guarded(Metrics));
        Page.PageFiles.Map(app, Guarded);
        app.MapFallback(Guarded(NotFound));
    }

    static readonly (string Path, string Method)[] Routes =
    [
        ("/v1/models", "GET"), ("/v1/chat/completions", "POST"), ("/v1/completions", "POST"), ("/tokenize", "POST"),
        ("/detokenize", "POST"), ("/health", "GET"), ("/metrics", "GET"), ("/", "GET"),
    ];

    static Task NotFound(HttpContext ctx, CancellationTokenSource _)
    {
        string path = ctx.Request.Path.Value ?? "";
        foreach (var (p, method) in Routes)
            if (string.Equals(p.TrimEnd('/'), path.TrimEnd('/'), StringComparison.OrdinalIgnoreCase))
            {
                ctx.Response.Headers.Allow = method;
                throw new InvalidRequestException($"Method {ctx.Request.Method} is not allowed for {p}; use {method}.",
                    code: "method_not_allowed", status: StatusCodes.Status405MethodNotAllowed);
            }
        throw new InvalidRequestException(
            $"Invalid URL ({ctx.Request.Method} {path}): this server has " +
            string.Join(", ", Routes.Select(r => $"{r.Method} {r.Path}")) + ".", code: "unknown_url", status: StatusCodes.Status404NotFound);
    }

    Task Models(HttpContext ctx, CancellationTokenSource _) =>
        HttpJson.WriteAsync(ctx, new ModelList("list", [Card()]), ServerJson.Api.ModelList);

    Task Model(HttpContext ctx, CancellationTokenSource _)
    {
        RequestFields.CheckModel(ctx.Request.RouteValues["id"] as string, runner.Model);
        return HttpJson.WriteAsync(ctx, Card(), ServerJson.Api.ModelCard);
    }

    ModelCard Card() => new(runner.Model.Id, "model", runner.Model.Created.ToUnixTimeSeconds(), "apb", runner.Model.MaxPositions)
        { Strategy = runner.Model.Strategy };

    Task Health(HttpContext ctx, CancellationTokenSource _) =>
        HttpJson.WriteAsync(ctx, new HealthResponse("ok", runner.Model.Id, runner.Queue.Running, runner.Queue.Waiting),
            ServerJson.Api.HealthResponse);

    Task Metrics(HttpContext ctx, CancellationTokenSource _)
    {
        ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        return ctx.Response.WriteAsync(metrics.Render(runner.Queue, runner.Model.Engine.Load));
    }

    RequestDelegate Guarded(Func<HttpContext, CancellationTokenSource, Task> handler) => async ctx =>
    {
        // Client gone or server stopping: either way the generation stops and its session is freed.
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, stopping);
        try { await handler(ctx, cancel); }
        catch (Exception e) { await FailAsync(ctx, e); }
    };

    async Task FailAsync(HttpContext ctx, Exception e)
    {
        if (ctx.RequestAborted.IsCancellationRequested)
        {
            ctx.Items[Aborted] = true;
            return;
        }
        var (status, body) = e switch
        {
            InvalidRequestException r => (r.Status, OpenAiErrors.Body(r.Message, OpenAiErrors.InvalidRequest, r.Param, r.Code)),
            // OpenAI's own 429 body: type "requests", code "rate_limit_exceeded"; clients back off on either.
            QueueFullException q => (StatusCodes.Status429TooManyRequests, OpenAiErrors.Body(q.Message, "requests", null, "rate_limit_exceeded")),
            // The ranks failed (a dead process, a communicator error): nothing here can serve; the server is stopping.
            ServiceUnavailableException u => (StatusCodes.Status503ServiceUnavailable, OpenAiErrors.Body(u.Message, OpenAiErrors.ServerError)),
            OperationCanceledException when stopping.IsCancellationRequested =>
                (StatusCodes.Status503ServiceUnavailable, OpenAiErrors.Body("The server is shutting down; retry against another instance or later.", OpenAiErrors.ServerError)),
            // The engine failed for a reason it can name (a rank, the device, the model's numbers): the server's side, not a crash.
            ApbException a => (StatusCodes.Status500InternalServerError, OpenAiErrors.Body(
                $"The server could not complete this request: {a.Message}", OpenAiErrors.ServerError)),
            _ => (StatusCodes.Status500InternalServerError, OpenAiErrors.Body(
                $"The server hit an internal error ({e.GetType().Name}: {e.Message}). This request was dropped; the server " +
                "keeps serving. This is a bug in apb: please report it with the server log (APB_DEBUG=1 logs the stack trace).",
                OpenAiErrors.ServerError)),
        };
        if (status >= 500) LogError(ctx, e);
        try
        {
            if (!ctx.Response.HasStarted)
            {
                if (status == StatusCodes.Status429TooManyRequests) ctx.Response.Headers.RetryAfter = "1";
                if (LeavesBodyUnread(ctx)) ctx.Response.Headers.Connection = "close";
                await HttpJson.WriteAsync(ctx, body, ServerJson.Api.ErrorResponse, status);
            }
            else if (ctx.Response.ContentType?.StartsWith("text/event-stream", StringComparison.Ordinal) == true)
            {
                // Mid-stream the status line is gone; OpenAI then sends the error as one more event, and the stream still ends.
                var events = new EventStream(ctx.Response);
                await events.WriteAsync(body, ServerJson.Api.ErrorResponse, CancellationToken.None);
                await events.DoneAsync(CancellationToken.None);
            }
        }
        catch (Exception) when (ctx.RequestAborted.IsCancellationRequested)
        {
            ctx.Items[Aborted] = true;
        }
    }

    // Refused before its body was read, a request leaves the rest of the body on the connection. Kestrel reads it away
    // before the next request when it is within the body limit; a larger or unannounced one makes Kestrel drop the
    // connection after the answer, and a client that sent its next request on it meanwhile gets no answer. Saying
    // "Connection: close" tells the client not to reuse it.
    bool LeavesBodyUnread(HttpContext ctx) =>
        !ctx.Items.ContainsKey(RequestBody.BytesRead)
        && ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestBodyDetectionFeature>()?.CanHaveBody == true
        && !(ctx.Request.ContentLength <= options.RequestBytesFor(runner.Model.MaxPositions));

    void LogError(HttpContext ctx, Exception e)
    {
        if (options.Log is not { } log) return;
        log.WriteLine($"{RequestLog.Timestamp()} id={RequestLog.Of(ctx).Id} error: {ctx.Request.Method} {ctx.Request.Path}: {e.GetType().Name}: {e.Message}");
        if (Environment.GetEnvironmentVariable("APB_DEBUG") == "1") log.WriteLine(e);
    }

    // Reading a request costs ~20 bytes of short-lived memory per byte of body (its JSON, strings, rendered template and
    // tokenizer input); a full collection runs only much later, so without this a refused 30 MB request leaves the process
    // 600 MB larger. Bodies this large are rare, and the heap a collection walks is small (weights are not on it).
    const long ReleaseAfterBytes = 4L << 20;

    static void ReleaseLargeRequest(HttpContext ctx)
    {
        if (ctx.Items[RequestBody.BytesRead] is long n && n >= ReleaseAfterBytes)
            GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }

    async Task CountAndLog(HttpContext ctx, RequestDelegate next)
    {
        long start = Stopwatch.GetTimestamp();
        var log = RequestLog.Start(ctx);
        try
        {
            RequestLimits.Check(ctx);
            // A CORS preflight is answered before the key is checked: browsers never send credentials with one.
            if (!origins.Handle(ctx))
            {
                apiKey?.Check(ctx);
                await next(ctx);
            }
        }
        catch (Exception e)
        {
            await FailAsync(ctx, e);
        }
        ReleaseLargeRequest(ctx);
        int status = ctx.Items.ContainsKey(Aborted) ? 499 : ctx.Response.StatusCode;
        metrics.CountRequest(ServerMetrics.Endpoint(ctx.Request.Path.Value), status);
        options.Log?.WriteLine(log.Line(ctx, status, Stopwatch.GetElapsedTime(start)));
    }
}
