using System.Diagnostics;
using System.IO.Compression;
using Xunit;

namespace Apb.Tests.Cli;

/// <summary>
/// The binary carries its demo model: models/embedded beside apb in the build and publish output, found from any
/// working directory; and the libraries pack as NuGet packages. (The Dockerfile needs docker, which CI does not have.)
/// </summary>
public class PublishLayoutTests
{
    /// <summary>A publish folder: apb.dll, its dependencies and models/embedded, copied out of the test's build output.</summary>
    static string PublishCopy(TempDir tmp, bool withModel)
    {
        string dir = tmp.File("publish");
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(AppContext.BaseDirectory))
            if (f.EndsWith(".dll", StringComparison.Ordinal) || Path.GetFileName(f) is "apb.runtimeconfig.json" or "apb.deps.json")
                File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        if (withModel)
        {
            string model = Path.Combine(dir, "models", "embedded");
            Directory.CreateDirectory(model);
            foreach (var f in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "models", "embedded")))
                File.Copy(f, Path.Combine(model, Path.GetFileName(f)));
        }
        return dir;
    }

    static (int Code, string Out, string Err) RunIn(string cwd, string dll, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = cwd };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2))) { p.Kill(true); return (-1, o.Result, e.Result); }
        return (p.ExitCode, o.Result, e.Result);
    }

    [Fact]
    public void TheBuildPutsTheEmbeddedModelBesideTheBinary()
    {
        string beside = Path.Combine(AppContext.BaseDirectory, "models", "embedded");
        foreach (var f in new[] { "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "retaining_heads.safetensors" })
            Assert.Equal(new FileInfo(Path.Combine(Repo.EmbeddedModel, f)).Length, new FileInfo(Path.Combine(beside, f)).Length);
    }

    [Fact]
    public void ACopiedPublishFolderRunsTheEmbeddedModelFromAnEmptyFolder()
    {
        using var tmp = new TempDir();
        string dll = Path.Combine(PublishCopy(tmp, withModel: true), "apb.dll");
        string empty = tmp.File("elsewhere");
        Directory.CreateDirectory(empty);
        var (code, output, err) = RunIn(empty, dll, "generate", "--prompt", "The key is 42.", "-n", "2");
        Assert.True(code == 0, err);
        Assert.Contains(Path.Combine(Path.GetDirectoryName(dll)!, "models", "embedded"), err);
        Assert.False(string.IsNullOrWhiteSpace(output));
    }

    /// <summary>`apb --version` is the build an eval's JSON records as its "engine" (and --resume checks).</summary>
    [Fact]
    public void VersionIsTheEngineThatResultFilesRecord()
    {
        using var tmp = new TempDir();
        var (code, output, err) = RunIn(tmp.Path, Path.Combine(PublishCopy(tmp, withModel: false), "apb.dll"), "--version");
        Assert.True(code == 0, err);
        Assert.Equal(global::Apb.Eval.RulerRun.ThisEngine, output.Trim());
        Assert.StartsWith("0.1.0", output);
    }

    [Fact]
    public void WithoutTheModelFolderTheErrorNamesEachPlaceOnce()
    {
        using var tmp = new TempDir();
        string dll = Path.Combine(PublishCopy(tmp, withModel: false), "apb.dll");
        string empty = tmp.File("elsewhere");
        Directory.CreateDirectory(empty);
        var run = RunIn(empty, dll, "generate");
        HostileCliTests.AssertUserError(run, "the embedded model was not found");
        string beside = Path.Combine(Path.GetDirectoryName(dll)!, "models", "embedded");
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(run.Err, System.Text.RegularExpressions.Regex.Escape(beside)));
        Assert.Contains("apb generate DIR", run.Err);
    }

    [Theory]
    [InlineData("Apb.Core")]
    [InlineData("Apb.Extensions.AI")]
    public void TheLibrariesPackWithTheirAssemblyAndMetadata(string project)
    {
        // Packs the Release build the test run already made (tools/test.sh builds the solution first).
        using var tmp = new TempDir();
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Repo.Root };
        foreach (var a in new[] { "pack", $"src/{project}/{project}.csproj", "-c", "Release", "--no-build", "-o", tmp.Path, "-p:Version=0.1.0-test" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(3)), "dotnet pack did not finish");
        Assert.True(p.ExitCode == 0, output);
        string nupkg = Path.Combine(tmp.Path, $"{project}.0.1.0-test.nupkg");
        using var zip = ZipFile.OpenRead(nupkg);
        var names = zip.Entries.Select(e => e.FullName).ToList();
        Assert.Contains($"lib/net10.0/{project}.dll", names);
        Assert.Contains("README.md", names);
        using var spec = new StreamReader(zip.GetEntry($"{project}.nuspec")!.Open());
        string nuspec = spec.ReadToEnd();
        Assert.Contains("<description>", nuspec);
        Assert.Contains("<tags>", nuspec);
    }
}
