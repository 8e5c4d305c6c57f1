namespace Apb.Tests;

/// <summary>Programs the tests drive when the machine has them (a browser, clang): found on PATH, as a shell would.</summary>
static class ToolPath
{
    /// <summary>The full path of <paramref name="name"/> in the first PATH folder that has it, or null.</summary>
    public static string? Which(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);
}
