using Xunit;

namespace Apb.Tests.Model;

/// <summary>
/// The reference fixtures of the model families beyond Llama 3.x / Qwen2 (tools/make_fixtures.py's "families" group),
/// made by transformers on the GPU machine and committed beside the older ones.
/// </summary>
public static class FamilyFixtures
{
    public static readonly string[] Names = ["qwen3-tiny", "qwen3-yarn-tiny", "mistral-tiny", "yi-tiny", "llama32-tiny", "llama-dynamic-tiny"];

    public const string Command = "python3 tools/make_fixtures.py tests/fixtures/models families";

    /// <summary>Null when every family fixture is committed, else which are missing and the command that makes them.</summary>
    public static string? Missing()
    {
        var missing = Names.Where(n => !File.Exists(Path.Combine(Repo.Fixture(n), "reference.json"))).ToList();
        return missing.Count == 0 ? null
            : $"fixture(s) {string.Join(", ", missing)} not generated yet: run `{Command}` on a machine with transformers (the GPU machine) and commit tests/fixtures/models";
    }
}

/// <summary>A theory over the family fixtures: skipped, naming the command that makes them, while any is absent.</summary>
public sealed class FamilyFixturesTheoryAttribute : TheoryAttribute
{
    public FamilyFixturesTheoryAttribute()
    {
        if (FamilyFixtures.Missing() is { } why) Skip = why;
    }
}

/// <summary>A fact over the family fixtures: skipped, naming the command that makes them, while any is absent.</summary>
public sealed class FamilyFixturesFactAttribute : FactAttribute
{
    public FamilyFixturesFactAttribute()
    {
        if (FamilyFixtures.Missing() is { } why) Skip = why;
    }
}
