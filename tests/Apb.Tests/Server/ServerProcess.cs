using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Apb.Tests.Server;

/// <summary>
/// `apb serve` as a separate process (alone, or under `apb launch` with one process per rank): started, waited for
/// until it says where it listens, and killed with its whole tree on Dispose. Keeps every stderr line, and the rank
/// pids the launcher announces, so a test can kill one rank and check that none is left behind.
/// </summary>
sealed partial class ServerProcess : IDisposable
{
    readonly Process _process;
    readonly List<string> _lines = [];
    readonly TaskCompletionSource<Uri> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Uri Address { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;
    public int Pid => _process.Id;

    ServerProcess(IEnumerable<string> args)
    {
        _process = Process.Start(ApbProcess.StartInfo(args))!;
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (_lines) _lines.Add(e.Data);
            if (Listening().Match(e.Data) is { Success: true } m) _listening.TrySetResult(new Uri(m.Groups[1].Value));
        };
        _process.OutputDataReceived += (_, e) => { if (e.Data != null) lock (_lines) _lines.Add(e.Data); };
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
    }

    /// <summary>Starts `apb ARGS` and waits (at most <paramref name="limit"/>) until it listens.</summary>
    public static async Task<ServerProcess> StartAsync(IEnumerable<string> args, TimeSpan limit)
    {
        var s = new ServerProcess(args);
        var exited = s._process.WaitForExitAsync();
        var first = await Task.WhenAny(s._listening.Task, exited, Task.Delay(limit));
        if (first != s._listening.Task)
        {
            string why = first == exited ? $"exited with code {s._process.ExitCode}" : $"did not listen within {limit.TotalSeconds:0} s";
            s.Dispose();
            throw new InvalidOperationException($"apb {string.Join(' ', args)} {why}:\n{s.Log}");
        }
        s.Address = s._listening.Task.Result;
        s.Http = new HttpClient { BaseAddress = s.Address, Timeout = TimeSpan.FromSeconds(120) };
        return s;
    }

    public string Log { get { lock (_lines) return string.Join('\n', _lines); } }

    /// <summary>The pids `apb launch` gave its ranks ("[launch] rank R: pid P"), by rank.</summary>
    public IReadOnlyDictionary<int, int> RankPids
    {
        get
        {
            lock (_lines)
                return _lines.Select(l => RankPid().Match(l)).Where(m => m.Success)
                    .ToDictionary(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), m => int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
        }
    }

    /// <summary>Waits for the process to end on its own: its exit code, or null when it was still running at the limit.</summary>
    public async Task<int?> WaitForExitAsync(TimeSpan limit)
    {
        using var cts = new CancellationTokenSource(limit);
        try { await _process.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException) { return null; }
        return _process.ExitCode;
    }

    /// <summary>True while a process of that pid runs (a zombie waiting to be reaped counts as gone).</summary>
    public static bool Alive(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/stat") is var stat && !stat.Contains(") Z ", StringComparison.Ordinal); }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return true; }
    }

    [GeneratedRegex(@"listening on (\S+) ")]
    private static partial Regex Listening();

    [GeneratedRegex(@"^\[launch\] rank (\d+): pid (\d+)")]
    private static partial Regex RankPid();

    public void Dispose()
    {
        Http?.Dispose();
        try { if (!_process.HasExited) _process.Kill(entireProcessTree: true); }
        catch (InvalidOperationException) { }
        _process.WaitForExit(10_000);
        _process.Dispose();
    }
}
