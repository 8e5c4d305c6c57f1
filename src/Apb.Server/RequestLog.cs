using System.Text;
using Apb.Serving;
using Microsoft.AspNetCore.Http;

namespace Apb.Server;

/// <summary>
/// The one log line of a request (ServerOptions.Log, stderr under `apb serve`), in logfmt so that grep and log
/// shippers can read it:
/// <c>2025-05-01T12:00:00.123Z id=req_… POST /v1/chat/completions status=200 total=0.412s prompt_tokens=812
/// completion_tokens=24 ttft=0.108s finish=stop strategy="full, 1 rank(s)"</c>. A completion's fields are there for
/// errors and cancellations too ("-" where not known, finish=error or finish=cancelled). The id is also the response's
/// x-request-id header (as OpenAI's), so a client can name the request it means.
/// </summary>
sealed class RequestLog
{
    const string Key = "apb.request-log";

    RequestLog(string id) => Id = id;

    public string Id { get; }
    bool _completion;
    int? _promptTokens;
    string? _user;
    IReadOnlyList<CompletionResult>? _choices;

    /// <summary>Gives the request its id (and x-request-id header); called before anything can fail.</summary>
    public static RequestLog Start(HttpContext ctx)
    {
        var log = new RequestLog("req_" + Guid.NewGuid().ToString("N")[..24]);
        ctx.Items[Key] = log;
        ctx.Response.Headers["x-request-id"] = log.Id;
        return log;
    }

    public static RequestLog Of(HttpContext ctx) => (RequestLog)ctx.Items[Key]!;

    /// <summary>The request is a completion: its line has the completion fields whatever happens next.</summary>
    public void Completion() => _completion = true;

    /// <summary>The request was read: its prompt's length and the client's "user" field.</summary>
    public void Read(int promptTokens, string? user) => (_promptTokens, _user) = (promptTokens, user);

    /// <summary>Every choice ran to its end.</summary>
    public void Finished(IReadOnlyList<CompletionResult> choices) => _choices = choices;

    public string Line(HttpContext ctx, int status, TimeSpan total)
    {
        var s = new StringBuilder();
        s.Append(Timestamp()).Append(" id=").Append(Id).Append(' ').Append(ctx.Request.Method).Append(' ').Append(ctx.Request.Path.Value)
            .Append(" status=").Append(status).Append(" total=").Append(Seconds(total));
        if (!_completion) return s.ToString();
        var first = _choices?[0];
        s.Append(" prompt_tokens=").Append(_promptTokens?.ToString() ?? "-")
            .Append(" completion_tokens=").Append(_choices?.Sum(c => c.CompletionTokens).ToString() ?? "-");
        if (_choices is { Count: > 1 }) s.Append(" choices=").Append(_choices.Count);
        s.Append(" ttft=").Append(first is null ? "-" : Seconds(first.TimeToFirstToken))
            // Each choice's reason, comma-joined for n > 1; a request that ended before its choices did failed or was cancelled.
            .Append(" finish=").Append(_choices is null ? status == 499 ? "cancelled" : "error" : string.Join(',', _choices.Select(c => c.FinishReason)))
            .Append(" strategy=").Append(Quoted(first?.Strategy));
        if (!string.IsNullOrEmpty(_user)) s.Append(" user=").Append(Quoted(_user.Length > 64 ? _user[..64] : _user));
        return s.ToString();
    }

    public static string Timestamp() => DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture);

    static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("F3", System.Globalization.CultureInfo.InvariantCulture) + "s";

    // A client's text in the log: quoted, its quotes, backslashes and control characters escaped, so one request is one line.
    static string Quoted(string? text)
    {
        if (text is null) return "-";
        var s = new StringBuilder("\"");
        foreach (char c in text)
            s.Append(c switch { '"' => "\\\"", '\\' => "\\\\", _ when char.IsControl(c) => $"\\u{(int)c:x4}", _ => c.ToString() });
        return s.Append('"').ToString();
    }
}
