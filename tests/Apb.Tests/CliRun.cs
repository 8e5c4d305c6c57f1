namespace Apb.Tests;

/// <summary>The command-line entry points run in-process: the exit code and what a user sees on stdout and stderr.</summary>
public static class CliRun
{
    /// <summary>`apb ARGS` (<see cref="global::Apb.Cli.Cli.Run"/>).</summary>
    public static (int Code, string Out, string Err) Apb(params string[] args) => Capture(global::Apb.Cli.Cli.Run, args);

    /// <summary>`apb-charts ARGS` (<see cref="global::Apb.Charts.ChartsCli.Run"/>).</summary>
    public static (int Code, string Out, string Err) Charts(params string[] args) => Capture(global::Apb.Charts.ChartsCli.Run, args);

    static (int Code, string Out, string Err) Capture(Func<string[], TextWriter, TextWriter, int> run, string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }
}
