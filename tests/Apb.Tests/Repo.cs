namespace Apb.Tests;

/// <summary>Paths inside the repository, found by walking up from the test binary to the folder holding Apb.slnx.</summary>
public static class Repo
{
    public static string Root { get; } = FindRoot();

    static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Apb.slnx"))) return d.FullName;
        throw new InvalidOperationException($"no Apb.slnx above {AppContext.BaseDirectory}");
    }

    public static string Fixture(string name) => Path.Combine(Root, "tests", "fixtures", "models", name);
    public static string EmbeddedModel => Path.Combine(Root, "models", "embedded");
}
