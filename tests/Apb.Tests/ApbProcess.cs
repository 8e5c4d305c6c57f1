using System.Diagnostics;

namespace Apb.Tests;

/// <summary>
/// `apb` as a separate process (`dotnet apb.dll ...`, the build beside the tests): for what must cross process
/// boundaries, such as `apb launch` and its ranks.
/// </summary>
public static class ApbProcess
{
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "apb.dll");

    public static ProcessStartInfo StartInfo(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        // A launched rank must not believe it runs under the test host's own launch variables (there are none, but be sure).
        foreach (var v in new[] { "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT" }) psi.Environment.Remove(v);
        return psi;
    }

    /// <summary>Runs to the end (killed, with its tree, after <paramref name="limit"/>): exit code, stdout, stderr.</summary>
    public static (int Code, string Out, string Err) Run(IEnumerable<string> args, TimeSpan limit)
    {
        using var p = Process.Start(StartInfo(args))!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(limit))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            return (-1, stdout.Result, stderr.Result + $"\n(killed after {limit.TotalSeconds:0} s)");
        }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
