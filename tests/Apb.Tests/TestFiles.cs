namespace Apb.Tests;

/// <summary>A fresh directory under the system temp folder, deleted with everything in it on Dispose.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("apb-test-").FullName;

    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>Copies every file of a fixture directory (flat) into this one.</summary>
    public TempDir CopyFrom(string dir)
    {
        foreach (var f in Directory.GetFiles(dir))
            System.IO.File.Copy(f, File(System.IO.Path.GetFileName(f)));
        return this;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
