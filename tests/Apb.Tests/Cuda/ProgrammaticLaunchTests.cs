using System.Text.RegularExpressions;
using Apb.Backends.Cuda;
using Xunit;

namespace Apb.Tests.Cuda;

/// <summary>
/// The kernels of <see cref="CudaContext.ProgrammaticFiles"/> are launched to overlap the kernel before them, which is
/// only safe when each one waits for its predecessor (pdl_wait, bf16.cuh) before touching memory another kernel may
/// write. A kernel added to one of those files without the wait would race without any test failing on a GPU most of
/// the time, so the source is checked here: every __global__ body calls pdl_wait or pdl_enter, itself or through the
/// __device__ functions it calls.
/// </summary>
public sealed class ProgrammaticLaunchTests
{
    [Fact]
    public void EveryKernelOfTheProgrammaticFilesWaitsForTheKernelBefore()
    {
        string header = string.Concat(KernelCompiler.Headers().Select(h => h.Text + "\n"));
        Assert.Equal(4, CudaContext.ProgrammaticFiles.Count);
        foreach (var file in CudaContext.ProgrammaticFiles)
        {
            var (kernels, missing) = KernelsWithoutWait(KernelCompiler.Source(file), header);
            Assert.True(kernels >= 2, $"{file}: found only {kernels} kernels; the source scan is broken");
            Assert.True(missing.Count == 0, $"{file}: kernels that never call pdl_wait: {string.Join(" | ", missing)}");
        }
    }

    [Fact]
    public void TheScanFindsAKernelWithoutTheWait()
    {
        const string source = """
            __device__ __forceinline__ void helper(float* p) { pdl_wait(); p[0] = 1; }
            __device__ __forceinline__ void plain(float* p) { p[0] = 2; }
            extern "C" __global__ void good_direct(float* p) { pdl_enter(); p[0] = 0; }
            extern "C" __global__ void __launch_bounds__(128) good_helper(float* p) { helper(p); }
            // a kernel that only mentions pdl_wait in a comment does not wait
            extern "C" __global__ void bad_plain(float* p) { plain(p); }
            #define MAKE(NAME) \
            extern "C" __global__ void NAME(float* p) \
            { plain(p); }
            MAKE(bad_macro)
            """;
        var (kernels, missing) = KernelsWithoutWait(source, "");
        Assert.Equal(4, kernels);
        Assert.Equal(2, missing.Count);
        Assert.Contains(missing, m => m.Contains("bad_plain"));
        Assert.Contains(missing, m => m.Contains("{ plain(p); }"));
    }

    [Fact]
    public void FilesOutsideTheListAreNotLaunchedProgrammatically()
    {
        // attention_hopper.cu's and apb.cu's kernels do not keep the contract: they must stay off the list.
        Assert.DoesNotContain("attention_hopper.cu", CudaContext.ProgrammaticFiles);
        Assert.DoesNotContain("apb.cu", CudaContext.ProgrammaticFiles);
        Assert.DoesNotContain("pdl_wait", KernelCompiler.Source("attention_hopper.cu"));
    }

    /// <summary>(kernels found, the bodies of those that never reach pdl_wait/pdl_enter).</summary>
    static (int Kernels, List<string> Missing) KernelsWithoutWait(string source, string header)
    {
        string code = StripComments(source), shared = StripComments(header);
        var device = new Dictionary<string, string>();
        foreach (var text in new[] { shared, code })
            foreach (Match m in Regex.Matches(text, @"__device__[^;{}()]*?\b(\w+)\s*\("))
                if (BodyAfter(text, m.Index) is { } body) device[m.Groups[1].Value] = body;
        int kernels = 0;
        var missing = new List<string>();
        foreach (Match m in Regex.Matches(code, @"__global__"))
        {
            kernels++;
            string body = BodyAfter(code, m.Index) ?? "";
            if (!Waits(body, device, depth: 0)) missing.Add(code.Substring(m.Index, Math.Min(160, code.Length - m.Index)).ReplaceLineEndings(" "));
        }
        return (kernels, missing);
    }

    static bool Waits(string body, Dictionary<string, string> device, int depth)
    {
        if (Regex.IsMatch(body, @"\bpdl_(wait|enter)\s*\(")) return true;
        if (depth >= 4) return false;
        foreach (Match call in Regex.Matches(body, @"\b(\w+)\s*(<[^<>;{}]*>)?\s*\("))
            if (device.TryGetValue(call.Groups[1].Value, out var callee) && Waits(callee, device, depth + 1)) return true;
        return false;
    }

    /// <summary>The brace-matched body that starts at the first '{' after <paramref name="from"/>, or null.</summary>
    static string? BodyAfter(string text, int from)
    {
        int open = text.IndexOf('{', from);
        if (open < 0) return null;
        int depth = 0;
        for (int i = open; i < text.Length; i++)
        {
            if (text[i] == '{') depth++;
            else if (text[i] == '}' && --depth == 0) return text[open..(i + 1)];
        }
        return null;
    }

    static string StripComments(string s) => Regex.Replace(s, @"//[^\n]*", "");
}
