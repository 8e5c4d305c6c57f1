namespace Apb.Charts;

/// <summary>
/// `apb-charts ruler|prefill --json FILE [--json FILE2 ...] --out FILE.png`: PNG charts of result files (ruler also
/// takes FILE=VARIANT, naming the variant of a file's non-full rows that do not name their own).
/// Every failure (bad arguments, missing file, wrong JSON shape) is one line on stderr and exit code 1.
/// </summary>
public static class ChartsCli
{
    public const int Width = 1200, Height = 700;

    const string Usage = "usage: apb-charts ruler|prefill --json FILE [--json FILE2 ...] --out FILE.png (ruler: --json FILE=VARIANT labels that file's non-full rows)";

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        try
        {
            if (args.Length == 0 || args[0] is "-h" or "--help")
            {
                (args.Length == 0 ? stderr : stdout).WriteLine(Usage);
                return args.Length == 0 ? 1 : 0;
            }
            string kind = args[0];
            var inputs = new List<string>();
            string? output = null;
            for (int i = 1; i < args.Length; i++)
            {
                string a = args[i];
                if (a is "-h" or "--help") { stdout.WriteLine(Usage); return 0; }
                if (a is "--json" or "--out")
                {
                    if (i + 1 >= args.Length) throw new ChartInputException($"{a} needs a value ({Usage})");
                    if (a == "--json") inputs.Add(args[++i]); else output = args[++i];
                }
                else throw new ChartInputException($"unknown argument '{a}' ({Usage})");
            }
            if (inputs.Count == 0) throw new ChartInputException($"no --json given ({Usage})");
            if (output == null) throw new ChartInputException($"no --out given ({Usage})");

            IReadOnlyList<string> written = kind switch
            {
                "ruler" => RulerChart.Render(ResultFiles.LoadRuler(inputs, stderr), output),
                "prefill" => [PrefillChart.Render(ResultFiles.LoadPrefill(inputs, stderr), output)],
                _ => throw new ChartInputException($"unknown chart '{kind}': expected ruler or prefill ({Usage})"),
            };
            foreach (var w in written) stdout.WriteLine($"wrote {w}");
            return 0;
        }
        catch (Exception e) when (e is ChartInputException or IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"apb-charts: {e.Message}");
            return 1;
        }
    }
}

/// <summary>Bad arguments or input: the message is printed as the one error line.</summary>
public sealed class ChartInputException(string message) : Exception(message);
