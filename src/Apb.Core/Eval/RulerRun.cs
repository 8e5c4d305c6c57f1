using System.Reflection;
using System.Security.Cryptography;

namespace Apb.Eval;

/// <summary>A file a run read, by name, with the SHA-256 of its bytes (lowercase hex).</summary>
public sealed record FileHash(string Name, string Sha256)
{
    public static FileHash Of(string path)
    {
        using var f = File.OpenRead(path);
        return new FileHash(Path.GetFileName(path), Convert.ToHexStringLower(SHA256.HashData(f)));
    }
}

/// <summary>
/// What produced a RULER result file, written beside its results: the command line (to run it again), the sample seed,
/// the device, the model folder and the hashes of the files that decide the numbers (weights, tokenizer, retaining
/// heads), so a result can be matched to the exact checkpoint it measured; Engine, the build of apb that ran it (its
/// version and commit). EarlierCommands: the commands of the runs a resumed file (`--resume`) holds rows of, oldest first.
/// </summary>
public sealed record RulerRun(string Command, int Seed, string Device, string Model, IReadOnlyList<FileHash> Files,
    IReadOnlyList<string>? EarlierCommands = null, string? Engine = null)
{
    /// <summary>This build's version, "0.1.0+&lt;commit&gt;" (the commit where the build had git).</summary>
    public static string ThisEngine { get; } =
        typeof(RulerRun).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    /// <summary>Hashes the checkpoint's weight files, its tokenizer.json and, when given, the retaining heads file.</summary>
    public static RulerRun Describe(string command, int seed, string device, string modelDirectory,
        IEnumerable<string> weightFiles, string? retainingHeads)
    {
        var files = weightFiles.Order(StringComparer.Ordinal).Append(Path.Combine(modelDirectory, "tokenizer.json"));
        if (retainingHeads != null) files = files.Append(retainingHeads);
        return new RulerRun(command, seed, device, Path.GetFullPath(modelDirectory), [.. files.Select(FileHash.Of)], Engine: ThisEngine);
    }
}
