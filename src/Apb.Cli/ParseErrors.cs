using System.CommandLine;

namespace Apb.Cli;

/// <summary>
/// A command line that does not parse: the first problem in one line, the nearest option or command when a name looks
/// misspelt, and where the full list is (`--help`), instead of the whole help text after the error.
/// </summary>
static class ParseErrors
{
    public static int Report(ParseResult parse, TextWriter stderr)
    {
        var command = parse.CommandResult.Command;
        string path = CommandPath(parse);
        // An unknown --flag can also be taken as the value of an optional argument (the model folder) and leave its own
        // value unmatched: the first word that looks like an option and is none is the one to name.
        string? unknown = parse.Tokens.FirstOrDefault(t => t.Type == System.CommandLine.Parsing.TokenType.Argument && LooksLikeOption(t.Value))?.Value
                          ?? parse.UnmatchedTokens.FirstOrDefault();
        string message = unknown switch
        {
            null => parse.Errors[0].Message,
            _ when unknown.StartsWith('-') => $"unknown option '{unknown}' for {path}" + Suggest(unknown, OptionNames(command)),
            _ when command.Subcommands.Count > 0 => $"unknown command '{unknown}' for {path}" + Suggest(unknown, command.Subcommands.Select(c => c.Name)),
            _ => $"unexpected argument '{unknown}' for {path}",
        };
        stderr.WriteLine($"error: {message} ({path} --help lists {(command.Subcommands.Count > 0 && unknown?.StartsWith('-') != true ? "the commands" : "the options")})");
        return 1;
    }

    static bool LooksLikeOption(string s) => s.Length > 1 && s[0] == '-' && !double.TryParse(s, System.Globalization.CultureInfo.InvariantCulture, out _);

    /// <summary>The error for a word that looks like an option of <paramref name="parse"/>'s command and is none, or null.</summary>
    public static string? UnknownOption(ParseResult parse, string word) =>
        LooksLikeOption(word)
            ? $"unknown option '{word}' for {CommandPath(parse)}{Suggest(word, OptionNames(parse.CommandResult.Command))} ({CommandPath(parse)} --help lists the options)"
            : null;

    static string CommandPath(ParseResult parse)
    {
        var names = new List<string>();
        for (var r = parse.CommandResult; r != null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            names.Add(r.Command is RootCommand ? "apb" : r.Command.Name);
        names.Reverse();
        return string.Join(' ', names);
    }

    static IEnumerable<string> OptionNames(Command c) =>
        c.Options.Where(o => !o.Hidden).SelectMany(o => o.Aliases.Prepend(o.Name)).Where(n => n.StartsWith("--", StringComparison.Ordinal));

    /// <summary>"; did you mean X?" for the closest name within a few edits (or one that contains the other), else "".</summary>
    public static string Suggest(string given, IEnumerable<string> names)
    {
        string g = given.Split('=')[0];
        var best = names.Distinct()
            .Select(n => (Name: n, Distance: Distance(g, n)))
            .Where(x => x.Distance <= Math.Max(2, g.Length / 3) || (g.Length > 3 && (x.Name.Contains(g.TrimStart('-')) || g.Contains(x.Name.TrimStart('-')))))
            .OrderBy(x => x.Distance).FirstOrDefault();
        return best.Name is null ? "" : $"; did you mean {best.Name}?";
    }

    /// <summary>Levenshtein distance: insertions, deletions and substitutions.</summary>
    static int Distance(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) prev[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(cur[j - 1], prev[j]) + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }
}
