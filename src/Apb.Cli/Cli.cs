using System.CommandLine;
using Apb.Cli.Commands;

namespace Apb.Cli;

/// <summary>
/// The `apb` command line. Every action runs inside <see cref="Guard"/>: an ApbException prints its message alone and
/// exits 1, as do a file the system cannot read or write and running out of memory (causes outside the program); anything
/// else is a bug, printed as one line (the stack trace only with APB_DEBUG=1) with exit code 2.
/// </summary>
public static class Cli
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("apb: long-context LLM inference with APB sequence parallelism");
        var io = new Io(stdout, stderr);
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
        return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
    }

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

/// <summary>Where a command writes: stdout for results (generated text, JSON), stderr for progress and statistics.</summary>
public sealed record Io(TextWriter Out, TextWriter Err);
