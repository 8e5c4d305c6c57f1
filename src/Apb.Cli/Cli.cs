using System.CommandLine;
using Apb.Cli.Commands;

namespace Apb.Cli;

/// <summary>
/// The `apb` command line. A command line that does not parse gets one error line with a suggestion (exit 1), not the
/// help text (<see cref="ParseErrors"/>). Every action runs inside <see cref="Guard"/>: an ApbException prints its message alone and
/// exits 1, as do a file the system cannot read or write and running out of memory (causes outside the program); anything
/// else is a bug, printed as one line (the stack trace only with APB_DEBUG=1) with exit code 2.
/// </summary>
public static class Cli
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("apb: long-context LLM inference with APB sequence parallelism");
        var io = new Io(stdout, stderr, ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected);
        root.Subcommands.Add(GenerateCommand.Create(io));
        root.Subcommands.Add(LogitsCommand.Create(io));
        root.Subcommands.Add(InspectCommand.Create(io));
        root.Subcommands.Add(EvalCommand.Create(io));
        root.Subcommands.Add(DoctorCommand.Create(io));
        root.Subcommands.Add(ServeCommand.Create(io));
        root.Subcommands.Add(LaunchCommand.Create(io));
        root.Subcommands.Add(BenchCommand.Create(io));
        root.Subcommands.Add(TokenizeCommand.Create(io));
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0 && !args.Any(a => a is "-h" or "--help" or "-?")) return ParseErrors.Report(parse, stderr);
        return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
    }

    /// <summary><see cref="Guard(Io, Func{int})"/> for a command with --quiet: the action's stderr is silent when it is set; errors still show.</summary>
    public static int Guard(Io io, bool quiet, Func<Io, int> action) =>
        Guard(io, () => action(quiet ? io with { Err = TextWriter.Null, ErrIsTerminal = false } : io));

    public static int Guard(Io io, Func<int> action)
    {
        try
        {
            return action();
        }
        catch (ApbException e)
        {
            io.Err.WriteLine($"error: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            io.Err.WriteLine($"error: {e.Message}");
            return 1;
        }
        catch (OutOfMemoryException)
        {
            io.Err.WriteLine("error: out of memory: this run needs more memory than the machine has; use a shorter prompt, fewer --ranks or a smaller model");
            return 1;
        }
        catch (OperationCanceledException)
        {
            io.Err.WriteLine("cancelled");
            return 130;
        }
        catch (Exception e)
        {
            io.Err.WriteLine($"internal error: {e.GetType().Name}: {e.Message}");
            if (Environment.GetEnvironmentVariable("APB_DEBUG") == "1") io.Err.WriteLine(e);
            else io.Err.WriteLine("this is a bug in apb; run again with APB_DEBUG=1 for the stack trace and report it");
            return 2;
        }
    }
}

/// <summary>
/// Where a command writes: stdout for results (generated text, JSON), stderr for progress and statistics;
/// <paramref name="ErrIsTerminal"/> when stderr is a terminal (progress rewrites one line there, else prints plain lines).
/// </summary>
public sealed record Io(TextWriter Out, TextWriter Err, bool ErrIsTerminal = false)
{
    /// <summary>Progress on stderr, <paramref name="plainInterval"/> apart at most when stderr is not a terminal.</summary>
    public Bench.Progress Progress(TimeSpan plainInterval) =>
        ReferenceEquals(Err, TextWriter.Null) ? Bench.Progress.Silent : new Bench.Progress(Err, ErrIsTerminal, plainInterval);
}
