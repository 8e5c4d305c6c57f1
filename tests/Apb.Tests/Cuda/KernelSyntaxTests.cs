using System.Diagnostics;
using System.Text.RegularExpressions;
using Apb.Backends.Cuda;
using Xunit;

namespace Apb.Tests.Cuda;

/// <summary>
/// Every kernel file compiled without a GPU or the CUDA toolkit: clang turns each embedded .cu source into PTX (device
/// code only, <see cref="KernelSyntax.Prelude"/> standing in for what NVRTC provides), once as it ships and once per
/// compile-time knob flipped, so a kernel edited on a machine without a GPU cannot reach the GPU machine with a C++
/// error in it, not even in a variant that is off by default. What this cannot check: the inline PTX (clang passes it
/// through as text; ptxas checks it on the GPU machine) and anything numerical (the GPU tests).
/// </summary>
public sealed class KernelSyntaxTests
{
    public static TheoryData<string, string> Builds()
    {
        var data = new TheoryData<string, string>();
        foreach (var file in KernelSyntax.Files())
            foreach (var defines in KernelSyntax.Variants(file))
                data.Add(file, defines);
        return data;
    }

    [ClangTheory]
    [MemberData(nameof(Builds))]
    public void TheKernelFileCompiles(string file, string defines)
    {
        var (ok, output) = KernelSyntax.Compile(KernelCompiler.Source(file), file, defines);
        Assert.True(ok, $"{file} with {(defines.Length == 0 ? "no defines" : defines)} does not compile:\n{output}");
    }

    [Fact]
    public void EveryKernelFileAndItsKnobsAreBuilt()
    {
        var files = KernelSyntax.Files();
        Assert.Contains("attention_hopper.cu", files);
        Assert.Equal(8, files.Count);
        var hopper = KernelSyntax.Variants("attention_hopper.cu");
        // As shipped, for sm_80 and as Hopper (__CUDA_ARCH__ 900), then each 0/1 knob flipped.
        Assert.Contains("", hopper);
        Assert.Contains("__CUDA_ARCH__=900", hopper);
        Assert.Contains("HOP_LAZY_RESCALE=0", hopper);
        Assert.Contains("HOP_ROWSUM_MMA=1", hopper);
        // A knob of a header is flipped for the files that include it; #ifdef knobs are set.
        Assert.Contains("APB_FP8_BITS=1", KernelSyntax.Variants("decode.cu"));
        Assert.Contains("DV2_MIN_BLOCKS=2", KernelSyntax.Variants("decode.cu"));
    }

    [ClangFact]
    public void AnErrorInAVariantIsFound()
    {
        const string source = """
            #include "bf16.cuh"
            #ifndef KNOB
            #define KNOB 0
            #endif
            extern "C" __global__ void k(float* p)
            {
            #if KNOB
                p[0] = undeclared;
            #else
                p[0] = bf2f(0);
            #endif
            }
            """;
        Assert.True(KernelSyntax.Compile(source, "test.cu", "").Ok);
        var (ok, output) = KernelSyntax.Compile(source, "test.cu", "KNOB=1");
        Assert.False(ok);
        Assert.Contains("undeclared", output);
    }
}

/// <summary>A test that needs clang: skipped, saying how to install it, where it is missing, except where CI requires it.</summary>
public sealed class ClangFactAttribute : FactAttribute
{
    public ClangFactAttribute()
    {
        if (KernelSyntax.Missing() is { } why) Skip = why;
    }
}

/// <inheritdoc cref="ClangFactAttribute"/>
public sealed class ClangTheoryAttribute : TheoryAttribute
{
    public ClangTheoryAttribute()
    {
        if (KernelSyntax.Missing() is { } why) Skip = why;
    }
}

static class KernelSyntax
{
    /// <summary>Set by .ci/run: there a missing clang fails these tests instead of skipping them.</summary>
    public const string RequiredVariable = "APB_CLANG_TESTS";

    static readonly Lazy<string?> s_clang = new(() =>
        new[] { "clang", "clang-19", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14" }
            .Select(ToolPath.Which).FirstOrDefault(p => p != null));

    public static string? Missing() =>
        s_clang.Value is null && Environment.GetEnvironmentVariable(RequiredVariable) != "required"
            ? "the kernel syntax checks need clang (`apt-get install clang`; .ci/run installs it and sets " +
              $"{RequiredVariable}=required so that CI runs them)"
            : null;

    /// <summary>The embedded kernel files (resource names end in the file name).</summary>
    public static IReadOnlyList<string> Files()
    {
        var asm = typeof(KernelCompiler).Assembly;
        return asm.GetManifestResourceNames().Where(n => n.EndsWith(".cu", StringComparison.Ordinal))
            .Select(n => Regex.Match(n, @"[A-Za-z0-9_]+\.cu$").Value).Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>
    /// The builds of one file, as comma-separated NAME=VALUE defines: none; Hopper's branches (clang 14 knows no sm_90,
    /// so __CUDA_ARCH__ is set to 900 over sm_80); each `#ifndef X / #define X 0|1` knob of the file and of the headers
    /// it includes flipped; each `#ifdef X` knob set to 2.
    /// </summary>
    public static IReadOnlyList<string> Variants(string file)
    {
        var texts = new List<string> { KernelCompiler.Source(file) };
        foreach (var (name, text) in KernelCompiler.Headers())
            if (texts[0].Contains($"#include \"{name}\"")) texts.Add(text);
        var variants = new List<string> { "", "__CUDA_ARCH__=900" };
        foreach (var text in texts)
        {
            foreach (Match m in Regex.Matches(text, @"^#ifndef (\w+)\r?\n#define \1 ([01])\s*$", RegexOptions.Multiline))
                variants.Add($"{m.Groups[1].Value}={(m.Groups[2].Value == "0" ? 1 : 0)}");
            foreach (Match m in Regex.Matches(text, @"^#ifdef (\w+)\s*$", RegexOptions.Multiline))
                variants.Add($"{m.Groups[1].Value}=2");
        }
        return variants.Distinct().ToList();
    }

    /// <summary>Compiles <paramref name="source"/> to PTX with the embedded headers beside it: (compiled, clang's output).</summary>
    public static (bool Ok, string Output) Compile(string source, string file, string defines)
    {
        string clang = s_clang.Value ?? throw new InvalidOperationException(Missing() ?? "clang not found");
        string dir = Directory.CreateTempSubdirectory("apb-kernel-syntax-").FullName;
        try
        {
            foreach (var (name, text) in KernelCompiler.Headers()) File.WriteAllText(Path.Combine(dir, name), text);
            File.WriteAllText(Path.Combine(dir, "prelude.h"), Prelude);
            File.WriteAllText(Path.Combine(dir, file), source);
            var psi = new ProcessStartInfo(clang) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = dir };
            foreach (var a in new[] { "-std=c++17", "-x", "cuda", "--cuda-device-only", "-nocudainc", "-nocudalib", "--cuda-gpu-arch=sm_80",
                                      "-Xclang", "-target-feature", "-Xclang", "+ptx75", "-Wno-macro-redefined", "-O0", "-S",
                                      "-o", "out.ptx", "-include", "prelude.h", "-I", "." })
                psi.ArgumentList.Add(a);
            foreach (var d in defines.Split(',', StringSplitOptions.RemoveEmptyEntries)) psi.ArgumentList.Add("-D" + d);
            psi.ArgumentList.Add(file);
            using var p = Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            string stdout = p.StandardOutput.ReadToEnd();
            if (!p.WaitForExit(120_000)) { p.Kill(true); return (false, "clang ran past 120 s"); }
            return (p.ExitCode == 0, stdout + stderr.Result);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>
    /// What NVRTC gives the kernel files, declared from clang's own NVPTX builtins (the files include no CUDA header).
    /// A syntax check only: the math functions here are not the CUDA library's (approximations stand in), and a
    /// function a kernel starts to use must be added here (the test's output names it).
    /// </summary>
    public const string Prelude = """
        #include <__clang_cuda_builtin_vars.h>
        #define __device__ __attribute__((device))
        #define __global__ __attribute__((global))
        #define __host__ __attribute__((host))
        #define __shared__ __attribute__((shared))
        #define __constant__ __attribute__((constant))
        #define __forceinline__ __attribute__((always_inline)) inline
        #define __noinline__ __attribute__((noinline))
        #define __align__(n) __attribute__((aligned(n)))
        #define __grid_constant__
        #define __launch_bounds__(...) __attribute__((launch_bounds(__VA_ARGS__)))
        #define __cluster_dims__(...)
        #define __restrict__ __restrict

        struct __align__(8) uint2 { unsigned x, y; };
        struct __align__(16) uint4 { unsigned x, y, z, w; };
        struct __align__(8) float2 { float x, y; };
        struct __align__(16) float4 { float x, y, z, w; };

        __device__ inline float __int_as_float(int x) { return __builtin_bit_cast(float, x); }
        __device__ inline float __uint_as_float(unsigned x) { return __builtin_bit_cast(float, x); }
        __device__ inline unsigned __float_as_uint(float x) { return __builtin_bit_cast(unsigned, x); }
        __device__ inline int __float_as_int(float x) { return __builtin_bit_cast(int, x); }

        __device__ inline int __shfl_sync(unsigned m, int v, int l, int w = 32) { return __nvvm_shfl_sync_idx_i32(m, v, l, ((32 - w) << 8) | 31); }
        __device__ inline unsigned __shfl_sync(unsigned m, unsigned v, int l, int w = 32) { return (unsigned)__shfl_sync(m, (int)v, l, w); }
        __device__ inline float __shfl_sync(unsigned m, float v, int l, int w = 32) { return __nvvm_shfl_sync_idx_f32(m, v, l, ((32 - w) << 8) | 31); }
        __device__ inline int __shfl_xor_sync(unsigned m, int v, int l, int w = 32) { return __nvvm_shfl_sync_bfly_i32(m, v, l, ((32 - w) << 8) | 31); }
        __device__ inline unsigned __shfl_xor_sync(unsigned m, unsigned v, int l, int w = 32) { return (unsigned)__shfl_xor_sync(m, (int)v, l, w); }
        __device__ inline float __shfl_xor_sync(unsigned m, float v, int l, int w = 32) { return __nvvm_shfl_sync_bfly_f32(m, v, l, ((32 - w) << 8) | 31); }
        __device__ inline int __any_sync(unsigned m, int p) { return __nvvm_vote_any_sync(m, p); }
        __device__ inline int __all_sync(unsigned m, int p) { return __nvvm_vote_all_sync(m, p); }
        __device__ inline unsigned __ballot_sync(unsigned m, int p) { return __nvvm_vote_ballot_sync(m, p); }
        __device__ inline void __syncwarp(unsigned m = 0xffffffffu) { __nvvm_bar_warp_sync(m); }
        __device__ inline unsigned __activemask() { unsigned m; asm volatile("activemask.b32 %0;" : "=r"(m)); return m; }
        __device__ inline unsigned atomicAdd(unsigned* p, unsigned v) { return (unsigned)__nvvm_atom_add_gen_i((int*)p, (int)v); }
        __device__ inline int atomicAdd(int* p, int v) { return __nvvm_atom_add_gen_i(p, v); }
        __device__ inline float atomicAdd(float* p, float v) { return __nvvm_atom_add_gen_f(p, v); }

        __device__ inline float __fmul_rn(float a, float b) { return __nvvm_mul_rn_f(a, b); }
        __device__ inline float __fadd_rn(float a, float b) { return __nvvm_add_rn_f(a, b); }
        __device__ inline float __fdiv_rn(float a, float b) { return __nvvm_div_rn_f(a, b); }
        __device__ inline float __fmaf_rn(float a, float b, float c) { return __nvvm_fma_rn_f(a, b, c); }
        __device__ inline float fmaf(float a, float b, float c) { return __nvvm_fma_rn_f(a, b, c); }
        __device__ inline float fmaxf(float a, float b) { return __nvvm_fmax_f(a, b); }
        __device__ inline float fminf(float a, float b) { return __nvvm_fmin_f(a, b); }
        __device__ inline float fabsf(float a) { return __nvvm_fabs_f(a); }
        __device__ inline float sqrtf(float a) { return __nvvm_sqrt_rn_f(a); }
        __device__ inline float rsqrtf(float a) { return __nvvm_rsqrt_approx_f(a); }
        __device__ inline float exp2f(float a) { return __nvvm_ex2_approx_f(a); }
        __device__ inline float log2f(float a) { return __nvvm_lg2_approx_f(a); }
        __device__ inline float expf(float a) { return __nvvm_ex2_approx_f(a * 1.44269504f); }
        __device__ inline float logf(float a) { return __nvvm_lg2_approx_f(a) * 0.693147181f; }
        __device__ inline void sincosf(float a, float* s, float* c) { *s = __nvvm_sin_approx_f(a); *c = __nvvm_cos_approx_f(a); }

        __device__ inline int min(int a, int b) { return a < b ? a : b; }
        __device__ inline int max(int a, int b) { return a > b ? a : b; }
        __device__ inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
        __device__ inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
        __device__ inline long min(long a, long b) { return a < b ? a : b; }
        __device__ inline long max(long a, long b) { return a > b ? a : b; }
        __device__ inline long long min(long long a, long long b) { return a < b ? a : b; }
        __device__ inline long long max(long long a, long long b) { return a > b ? a : b; }
        """;
}
