using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Threading.Channels;
using Apb.Serving;
using Microsoft.AspNetCore.Http;

namespace Apb.Server;

/// <summary>
/// A server-sent-event response as OpenAI streams: <c>data: {json}\n\n</c> per chunk, <c>data: [DONE]\n\n</c> at the
/// end. Each event is flushed at once; a client reading tokens as they come is the point of streaming.
/// </summary>
sealed class EventStream(HttpResponse response)
{
    static readonly byte[] Data = "data: "u8.ToArray(), End = "\n\n"u8.ToArray(), Done = "data: [DONE]\n\n"u8.ToArray();

    public Task StartAsync(CancellationToken cancel)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no"; // reverse proxies (nginx) would otherwise hold the events back
        return response.StartAsync(cancel);
    }

    public async Task WriteAsync<T>(T value, JsonTypeInfo<T> type, CancellationToken cancel)
    {
        await response.Body.WriteAsync(Data, cancel);
        await response.Body.WriteAsync(JsonSerializer.SerializeToUtf8Bytes(value, type), cancel);
        await response.Body.WriteAsync(End, cancel);
        await response.Body.FlushAsync(cancel);
    }

    public async Task DoneAsync(CancellationToken cancel)
    {
        await response.Body.WriteAsync(Done, cancel);
        await response.Body.FlushAsync(cancel);
    }

    /// <summary>
    /// Runs the job and hands its text to <paramref name="write"/> as it comes. Pieces that pile up while a write is
    /// under way go out together in the next event. Whatever ends the stream early (client gone, a failed write), the
    /// generation is cancelled and awaited before this returns, so its session and KV cache are already released.
    /// </summary>
    public static async Task<CompletionResult> PumpAsync(InferenceRunner runner, IDisposable slot, CompletionJob job,
        Func<string, Task> write, CancellationTokenSource cancel)
    {
        var channel = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var run = runner.RunAsync(slot, job, piece => channel.Writer.TryWrite(piece), cancel.Token);
        _ = run.ContinueWith(static (_, w) => ((ChannelWriter<string>)w!).TryComplete(), channel.Writer,
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        try
        {
            var text = new StringBuilder();
            while (await channel.Reader.WaitToReadAsync(cancel.Token))
            {
                text.Clear();
                while (channel.Reader.TryRead(out var piece)) text.Append(piece);
                if (text.Length > 0) await write(text.ToString());
            }
            return await run;
        }
        finally
        {
            if (!run.IsCompleted)
            {
                cancel.Cancel();
                try { await run; } catch { /* the exception that brought us here is the one to report */ }
            }
        }
    }
}
