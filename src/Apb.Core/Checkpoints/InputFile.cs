using System.Text;

namespace Apb.Checkpoints;

/// <summary>
/// Opens and reads the files a user names (checkpoint files, prompt files) so that no file can hang or exhaust the
/// process: opening a FIFO that nobody writes to blocks in open(2) for ever, so the open runs with a time limit; a
/// device or pipe that never ends (/dev/zero) is read only up to a size limit. Every failure is an ApbException that
/// names the file.
/// </summary>
public static class InputFile
{
    /// <summary>How long an open may take: a regular file opens at once, a FIFO only when a writer opens it too.</summary>
    public static readonly TimeSpan OpenTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Opens <paramref name="path"/> for reading; <paramref name="what"/> says what the file is for in errors.</summary>
    public static FileStream OpenRead(string path, string what)
    {
        if (Directory.Exists(path)) throw new ApbException($"{path}: is a directory, but the {what} must be a file");
        if (!File.Exists(path)) throw new ApbException($"{path}: {what} not found");
        // A thread of its own, not the pool's: under load the pool may not start the open within the time limit.
        var open = Task.Factory.StartNew(() => new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        try
        {
            if (!open.Wait(OpenTimeout))
            {
                // The open stays blocked until a writer comes; if one does, the stream is closed then.
                open.ContinueWith(t => t.Result.Dispose(), TaskContinuationOptions.OnlyOnRanToCompletion);
                throw new ApbException($"{path}: opening the {what} did not finish in {OpenTimeout.TotalSeconds:F0} s: it is a FIFO (named pipe) or device that no program writes to; give a regular file");
            }
            return open.Result;
        }
        catch (AggregateException e) when (e.InnerException is IOException or UnauthorizedAccessException)
        {
            throw new ApbException($"{path}: cannot open the {what} ({e.InnerException.Message})", e.InnerException);
        }
    }

    /// <summary>
    /// Opens a file that must be a regular file (one that can be memory-mapped or read twice): a FIFO, socket or
    /// terminal is refused by name.
    /// </summary>
    public static FileStream OpenRegular(string path, string what)
    {
        var fs = OpenRead(path, what);
        if (fs.CanSeek) return fs;
        fs.Dispose();
        throw new ApbException($"{path}: the {what} is a pipe or device, not a regular file; copy it to a file first");
    }

    /// <summary>The whole file, at most <paramref name="maxBytes"/>: more is refused, so /dev/zero or a runaway pipe ends.</summary>
    public static byte[] ReadAllBytes(string path, long maxBytes, string what)
    {
        using var fs = OpenRead(path, what);
        using var buffer = new MemoryStream();
        var chunk = new byte[64 * 1024];
        try
        {
            int n;
            while ((n = fs.Read(chunk)) > 0)
            {
                if (buffer.Length + n > maxBytes)
                    throw new ApbException($"{path}: the {what} has more than {maxBytes} bytes, more than it can usefully hold (a device such as /dev/zero, or the wrong file?)");
                buffer.Write(chunk, 0, n);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ApbException($"{path}: cannot read the {what} ({e.Message})", e);
        }
        return buffer.ToArray();
    }

    /// <summary>
    /// A JSON file's bytes, checked to be UTF-8 up front: JsonDocument accepts some invalid UTF-8 inside strings and fails
    /// only when one is read, far from the cause and not as an ApbException.
    /// </summary>
    public static byte[] ReadJsonBytes(string path, long maxBytes, string what)
    {
        var bytes = ReadAllBytes(path, maxBytes, what);
        if (!System.Text.Unicode.Utf8.IsValid(bytes))
            throw new ApbException($"{path}: the {what} is not valid UTF-8 text (JSON files are UTF-8): the file is corrupt");
        return bytes;
    }

    /// <summary>
    /// <see cref="ReadAllBytes"/> as text, decoded as File.ReadAllText does: UTF-8 unless a byte order mark says
    /// otherwise, invalid bytes as U+FFFD.
    /// </summary>
    public static string ReadAllText(string path, long maxBytes, string what)
    {
        using var reader = new StreamReader(new MemoryStream(ReadAllBytes(path, maxBytes, what)), Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        return reader.ReadToEnd();
    }
}
