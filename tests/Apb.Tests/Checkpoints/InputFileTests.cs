using System.Diagnostics;
using Apb.Checkpoints;
using Xunit;

namespace Apb.Tests.Checkpoints;

/// <summary>Files a user names never hang the process or grow it without bound (issue #16: a FIFO, /dev/zero).</summary>
public class InputFileTests : IDisposable
{
    readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    [Fact]
    public void AFifoNobodyWritesToFailsAfterTheOpenTimeout()
    {
        if (OperatingSystem.IsWindows()) return; // no FIFOs
        string fifo = Fifo.Make(_tmp.Path, "weights.safetensors");
        var sw = Stopwatch.StartNew();
        try
        {
            Expect.Error(() => SafeTensorsFile.Open(fifo), fifo, "FIFO (named pipe)", "give a regular file");
            Assert.InRange(sw.Elapsed.TotalSeconds, InputFile.OpenTimeout.TotalSeconds - 0.5, InputFile.OpenTimeout.TotalSeconds + 5);
        }
        finally { Fifo.Release(fifo); }
    }

    [Fact]
    public async Task APipeWithAWriterIsReadButCannotBeMapped()
    {
        if (OperatingSystem.IsWindows()) return;
        string fifo = Fifo.Make(_tmp.Path, "prompt.txt");
        var writer = Task.Run(() => File.WriteAllText(fifo, "hello through a pipe"));
        Assert.Equal("hello through a pipe", InputFile.ReadAllText(fifo, 1024, "prompt file"));
        await writer.WaitAsync(TimeSpan.FromSeconds(10));

        writer = Task.Run(() => { try { File.WriteAllBytes(fifo, new byte[64]); } catch (IOException) { } });
        Expect.Error(() => InputFile.OpenRegular(fifo, "safetensors weights file"), fifo, "not a regular file");
        await writer.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void ADeviceThatNeverEndsIsReadOnlyUpToTheLimit()
    {
        if (!File.Exists("/dev/zero")) return;
        long before = GC.GetAllocatedBytesForCurrentThread();
        Expect.Error(() => InputFile.ReadAllBytes("/dev/zero", 1 << 20, "model config"), "/dev/zero", "more than 1048576 bytes");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 8 << 20, "reading stopped at the limit");
    }

    [Fact]
    public void ADirectoryIsNotAFile()
    {
        Expect.Error(() => InputFile.OpenRead(_tmp.Path, "prompt file"), _tmp.Path, "is a directory");
        Expect.Error(() => InputFile.OpenRead(_tmp.File("missing.txt"), "prompt file"), "prompt file not found");
    }
}

/// <summary>Named pipes for tests, and the way to unblock an open that still waits on one.</summary>
public static class Fifo
{
    public static string Make(string dir, string name)
    {
        string path = Path.Combine(dir, name);
        using var p = Process.Start(new ProcessStartInfo("mkfifo", path) { UseShellExecute = false })!;
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
        return path;
    }

    /// <summary>
    /// The timed-out open still waits inside open(2); opening the write end completes it (the reader then closes it), so no
    /// thread stays blocked after the test.
    /// </summary>
    public static void Release(string path)
    {
        var t = Task.Run(() => { try { using var w = new FileStream(path, FileMode.Open, FileAccess.Write); } catch (IOException) { } });
        t.Wait(TimeSpan.FromSeconds(5));
    }
}
