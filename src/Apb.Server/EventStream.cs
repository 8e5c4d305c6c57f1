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
    /// Runs the request's choices (<see cref="ChoiceRuns"/>) and hands each one's text to <paramref name="write"/> with
    /// its index as it comes. Pieces that pile up while a write is under way go out together in the next event. Whatever
    /// ends the stream early (client gone, a failed write), the generations are cancelled and awaited before this
    /// returns, so their sequences and KV caches are already released.
    /// </summary>
    public static async Task<CompletionResult[]> PumpAsync(InferenceRunner runner, IDisposable slot, IReadOnlyList<CompletionJob> jobs,
        Func<int, string, Task> write, CancellationTokenSource cancel)
    {
        var channel = Channel.CreateUnbounded<(int Index, string Text)>(new UnboundedChannelOptions { SingleReader = true });
        var run = ChoiceRuns.RunAsync(runner, slot, jobs, (i, piece) => channel.Writer.TryWrite((i, piece)), cancel.Token);
        _ = run.ContinueWith(static (_, w) => ((ChannelWriter<(int, string)>)w!).TryComplete(), channel.Writer,
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        try
        {
            var pending = Enumerable.Range(0, jobs.Count).Select(_ => new StringBuilder()).ToArray();
            while (await channel.Reader.WaitToReadAsync(cancel.Token))
            {
                while (channel.Reader.TryRead(out var piece)) pending[piece.Index].Append(piece.Text);
                for (int i = 0; i < pending.Length; i++)
                    if (pending[i].Length > 0)
                    {
                        string text = pending[i].ToString();
                        pending[i].Clear();
                        await write(i, text);
                    }
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
