namespace Apb.Tests;

/// <summary>Paths inside the repository, found by walking up from the test binary to the folder holding Apb.slnx.</summary>
public static class Repo
{
    public static string Root { get; } = FindRoot();

    // The build stamps the source folder into the assembly, so tests find the repository even when built into an
    // --artifacts-path outside it; walking up from the binary is the fallback.
    static string FindRoot()
    {
        var stamped = typeof(Repo).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
            .Cast<System.Reflection.AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == "RepoRoot")?.Value;
        if (stamped != null && File.Exists(Path.Combine(stamped, "Apb.slnx"))) return Path.GetFullPath(stamped);
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Apb.slnx"))) return d.FullName;
        throw new InvalidOperationException($"no Apb.slnx above {AppContext.BaseDirectory} and no RepoRoot stamp");
    }

    public static string Fixture(string name) => Path.Combine(Root, "tests", "fixtures", "models", name);
    /// <summary>The random-weight 1.7M-parameter Qwen2-shaped checkpoint: fast, for tests of the engine's plumbing.</summary>
    public static string TinyModel => Fixture("embedded-random");
    /// <summary>The embedded default: the trained small retrieval model.</summary>
    public static string EmbeddedModel => Path.Combine(Root, "models", "embedded");
}
