using System.Diagnostics;

namespace Apb.Bench;

/// <summary>
/// Progress of long work on stderr. On a terminal one status line rewritten in place (carriage return, at most ten
/// times a second) and cleared at the end; elsewhere (a log file, a pipe, CI) plain lines, at most one per
/// <c>plainInterval</c> so a log does not fill with them. <see cref="Silent"/> writes nothing (`--quiet`).
/// </summary>
public sealed class Progress : IDisposable
{
    readonly TextWriter? _writer;
    readonly bool _terminal;
    readonly TimeSpan _plainInterval;
    readonly Stopwatch _clock = Stopwatch.StartNew();
    readonly Lock _lock = new();
    TimeSpan _last = TimeSpan.MinValue;
    int _shown; // characters of the status line now on the terminal

    public Progress(TextWriter writer, bool terminal, TimeSpan plainInterval)
    {
        _writer = writer;
        _terminal = terminal;
        _plainInterval = plainInterval;
    }

    Progress() { }

    /// <summary>Writes nothing.</summary>
    public static Progress Silent { get; } = new();

    /// <summary>Time since this progress began.</summary>
    public TimeSpan Elapsed => _clock.Elapsed;

    /// <summary>The status now; <paramref name="force"/> writes it even within the interval (a last step, a first one).</summary>
    public void Update(string status, bool force = false)
    {
        if (_writer is null) return;
        lock (_lock)
        {
            var now = _clock.Elapsed;
            var interval = _terminal ? TimeSpan.FromMilliseconds(100) : _plainInterval;
            if (!force && _last != TimeSpan.MinValue && now - _last < interval) return;
            _last = now;
            if (_terminal)
            {
                _writer.Write("\r" + status.PadRight(_shown));
                _shown = status.Length;
            }
            else _writer.WriteLine(status);
            _writer.Flush();
        }
    }

    /// <summary>A line that stays (a finished step): the status line is cleared first on a terminal.</summary>
    public void Line(string text)
    {
        if (_writer is null) return;
        lock (_lock)
        {
            ClearLine();
            _writer.WriteLine(text);
            _writer.Flush();
        }
    }

    void ClearLine()
    {
        if (!_terminal || _shown == 0) return;
        _writer!.Write("\r" + new string(' ', _shown) + "\r");
        _shown = 0;
    }

    /// <summary>"done/total, ETA 1m05s" from the rate so far; no ETA before the first step is done.</summary>
    public static string Fraction(long done, long total, TimeSpan elapsed)
    {
        string eta = done > 0 && done < total ? $", ETA {Duration(elapsed.TotalSeconds / done * (total - done))}" : "";
        return $"{done}/{total}{eta}";
    }

    /// <summary>4.2s, 3m07s, 2h05m.</summary>
    public static string Duration(double seconds) => seconds switch
    {
        < 60 => $"{seconds:F1}s",
        < 3600 => $"{(int)(seconds / 60)}m{(int)(seconds % 60):D2}s",
        _ => $"{(int)(seconds / 3600)}h{(int)(seconds % 3600 / 60):D2}m",
    };

    /// <summary>Takes the status line off a terminal (plain lines stay); the next update writes a new one.</summary>
    public void Clear()
    {
        if (_writer is null) return;
        lock (_lock)
        {
            ClearLine();
            _writer.Flush();
        }
    }

    public void Dispose() => Clear();
}
