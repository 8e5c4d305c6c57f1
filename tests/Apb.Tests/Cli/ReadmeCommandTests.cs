using System.Text.RegularExpressions;
using Xunit;

namespace Apb.Tests.Cli;

/// <summary>README's command reference against `--help`: every command is listed, and every flag it shows exists.</summary>
public class ReadmeCommandTests
{
    /// <summary>The indented block under "## Commands": lines that start a command ("apb NAME ...") and their continuations.</summary>
    static List<(string[] Command, string Text)> ReadmeCommands()
    {
        string readme = File.ReadAllText(Path.Combine(Repo.Root, "README.md"));
        int at = readme.IndexOf("## Commands", StringComparison.Ordinal);
        var block = readme[at..].Split('\n').Skip(1).SkipWhile(l => l.Trim().Length == 0).TakeWhile(l => l.StartsWith("    ", StringComparison.Ordinal));
        var entries = new List<(string[], string)>();
        foreach (var line in block)
        {
            var m = Regex.Match(line, @"^    apb (\w+)(?: (prefill|decode|serve|kernel|attention|ruler|generate|paired|coverage|show|depth)\b)?");
            if (m.Success) entries.Add((m.Groups[2].Success ? [m.Groups[1].Value, m.Groups[2].Value] : [m.Groups[1].Value], line));
            else if (entries.Count > 0) entries[^1] = (entries[^1].Item1, entries[^1].Item2 + " " + line);
        }
        return entries;
    }

    [Fact]
    public void EveryFlagTheReadmeShowsIsInTheCommandsHelp()
    {
        var entries = ReadmeCommands();
        Assert.True(entries.Count >= 10, $"found {entries.Count} commands in README's block");
        foreach (var (command, text) in entries)
        {
            var help = CliRun.Apb([.. command, "--help"]);
            Assert.True(help.Code == 0, string.Join(' ', command));
            // Flags of `apb launch ... -- CMD ...` after "--" belong to CMD, checked on their own lines.
            string own = text.Contains(" -- ") ? text[..text.IndexOf(" -- ", StringComparison.Ordinal)] : text;
            foreach (Match f in Regex.Matches(own, @"(?<![\w-])(--?[a-z][a-z0-9-]*)"))
                Assert.True(Regex.IsMatch(help.Out, $@"(?<![\w-]){Regex.Escape(f.Value)}(?![\w-])"), $"README shows {f.Value} for apb {string.Join(' ', command)}, which its --help does not list");
        }
    }

    [Fact]
    public void EveryCommandIsInTheReadme()
    {
        var listed = ReadmeCommands().Select(e => string.Join(' ', e.Command)).ToHashSet();
        foreach (var path in HonestOutputTests.CommandPaths())
        {
            string name = string.Join(' ', path);
            Assert.True(listed.Contains(name) || listed.Contains(path[0]), $"apb {name} is not in README's command reference");
        }
    }
}
