using Apb.Backends.Cuda;
using Apb.Backends.Cuda.Native;
using Xunit;

namespace Apb.Tests.Cuda;

/// <summary>The CUDA backend's host side, testable without a GPU: library resolution, the kernel cache key, doctor.</summary>
public class CudaHostTests
{
    [Fact]
    public void SearchFoldersFollowTheDocumentedOrder()
    {
        var env = new Dictionary<string, string> { ["APB_CUDA_LIB_DIR"] = "/opt/a:/opt/b", ["CUDA_HOME"] = "/opt/cuda" };
        var dirs = NativeResolver.SearchFolders(n => env.GetValueOrDefault(n));
        Assert.Equal(["/opt/a", "/opt/b", "/opt/cuda/lib64", "/opt/cuda/lib", "/usr/local/cuda/lib64", "/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu"],
            dirs.Take(7));
    }

    [Fact]
    public void AGpuThatIsNotHopperIsToldWhyItHasNoHopperKernel()
    {
        // What `apb doctor` prints and --prefill-attention fp8's refusal points to; other architectures never reach the
        // driver or NVRTC checks, so this holds without a GPU.
        Assert.Equal("sm_86 is not sm_90 (H100/H200)", CudaBackend.HopperAttentionProblem("sm_86"));
        Assert.Equal("sm_100 is not sm_90 (H100/H200)", CudaBackend.HopperAttentionProblem("sm_100"));
    }

    [Fact]
    public void GemmTuneIsOffUnlessAskedAndAnUnknownValueSaysWhatItTakes()
    {
        Assert.False(Gemm.ParseTune(null));
        Assert.False(Gemm.ParseTune(""));
        Assert.False(Gemm.ParseTune("0"));
        Assert.True(Gemm.ParseTune("1"));
        var e = Assert.Throws<ApbException>(() => Gemm.ParseTune("yes"));
        Assert.Contains("APB_GEMM_TUNE=yes", e.Message);
        Assert.Contains("expected 1", e.Message);
    }

    [Fact]
    public void MissingLibraryLeavesAReadableTraceAndNoCrash()
    {
        using var tmp = new TempDir();
        string empty = tmp.Path;
        var r = new NativeResolver(n => n == "APB_CUDA_LIB_DIR" ? empty : null);
        nint h = r.TryLoad("driver", "libapb-test-missing.so.1");
        Assert.Equal(0, h);
        string trace = r.TraceText;
        Assert.Contains($"{empty}/libapb-test-missing.so.1: not found", trace);
        Assert.Contains("not found by the loader's default search either", trace);
    }

    [Fact]
    public void AFileThatIsNotALibrarySaysDlopenFailed()
    {
        using var tmp = new TempDir();
        string dir = tmp.Path;
        File.WriteAllText(Path.Combine(dir, "libapb-test-bogus.so.1"), "not an ELF file");
        var r = new NativeResolver(n => n == "APB_CUDA_LIB_DIR" ? dir : null);
        Assert.Equal(0, r.TryLoad("bogus", "libapb-test-bogus.so.1"));
        Assert.Contains("exists but dlopen failed", r.TraceText);
    }

    [Fact]
    public void CacheKeyChangesWithEveryInput()
    {
        string[] opts = ["--gpu-architecture=sm_90a", "--std=c++17"];
        (string, string)[] H = [("bf16.cuh", "typedef unsigned short bf16;")];
        string k = KernelCompiler.CacheKey("src", H, opts, "sm_90a", "13.0");
        Assert.Equal(k, KernelCompiler.CacheKey("src", H, opts, "sm_90a", "13.0"));
        Assert.Equal(64, k.Length);
        Assert.NotEqual(k, KernelCompiler.CacheKey("src ", H, opts, "sm_90a", "13.0"));
        Assert.NotEqual(k, KernelCompiler.CacheKey("src", H, ["--gpu-architecture=sm_90a"], "sm_90a", "13.0"));
        Assert.NotEqual(k, KernelCompiler.CacheKey("src", H, opts, "sm_80", "13.0"));
        Assert.NotEqual(k, KernelCompiler.CacheKey("src", H, opts, "sm_90a", "12.9"));
        // A header is compiled with every file: changing its text, or adding one, is a different key.
        Assert.NotEqual(k, KernelCompiler.CacheKey("src", [("bf16.cuh", "typedef unsigned short bf16; ")], opts, "sm_90a", "13.0"));
        Assert.NotEqual(k, KernelCompiler.CacheKey("src", [.. H, ("x.cuh", "")], opts, "sm_90a", "13.0"));
        // Length prefixes: moving a character between two options is a different key.
        Assert.NotEqual(KernelCompiler.CacheKey("s", H, ["ab", "c"], "a", "v"), KernelCompiler.CacheKey("s", H, ["a", "bc"], "a", "v"));
    }

    [Fact]
    public void ArchitectureIsSm90aOnHopperAndRefusesPreAmpere()
    {
        Assert.Equal("sm_90a", KernelCompiler.Architecture(9, 0));
        Assert.Equal("sm_80", KernelCompiler.Architecture(8, 0));
        Assert.Equal("sm_89", KernelCompiler.Architecture(8, 9));
        var e = Assert.Throws<ApbException>(() => KernelCompiler.Architecture(7, 5));
        Assert.Contains("8.0 or newer", e.Message);
    }

    [Fact]
    public void EveryKernelTheBackendLaunchesIsInTheEmbeddedSources()
    {
        string elementwise = KernelCompiler.Source("elementwise.cu"), attention = KernelCompiler.Source("attention.cu");
        foreach (var name in new[] { "apb_convert_f32_bf16", "apb_convert_f16_bf16", "apb_embed", "apb_rms_norm", "apb_add_rms_norm", "apb_add", "apb_silu_mul",
                     "apb_silu", "apb_rope", "apb_copy2d_u16", "apb_copy2d_u32", "apb_merge_attention", "apb_merge_parts" })
            Assert.Contains($"void {name}(", elementwise);
        foreach (var name in new[] { "apb_attention_generic", "apb_attention_mma2_d64", "apb_attention_mma2_d128" })
            Assert.Contains(name + "(", attention);
    }

    /// <summary>
    /// NVRTC has no default include path and the machine may have no CUDA headers: a kernel file may include only our own
    /// embedded headers (KernelCompiler hands them to NVRTC by name), never a system or CUDA header.
    /// </summary>
    static void AssertIncludesOnlyEmbeddedHeaders(string file, string source)
    {
        var embedded = KernelCompiler.Headers().Select(h => h.Name).ToHashSet();
        foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(source, @"^\s*#\s*include\s*(\S+)", System.Text.RegularExpressions.RegexOptions.Multiline))
        {
            string target = m.Groups[1].Value;
            Assert.True(target.Length > 2 && target[0] == '"' && target[^1] == '"' && embedded.Contains(target[1..^1]),
                $"{file}: {m.Value.Trim()}: kernels may include only the embedded headers ({string.Join(", ", embedded)})");
        }
    }

    [Fact]
    public void EveryKernelFileIncludesOnlyEmbeddedHeaders()
    {
        Assert.Contains(KernelCompiler.Headers(), h => h.Name == "bf16.cuh" && h.Text.Contains("f2bf("));
        // Every kernel file embedded in Apb.Core, so one added later is checked too; at least the six the backend compiles.
        var asm = typeof(KernelCompiler).Assembly;
        var kernels = asm.GetManifestResourceNames().Where(n => n.EndsWith(".cu", StringComparison.Ordinal))
            .Select(n => (Resource: n, File: n[(n.LastIndexOf('.', n.Length - 4) + 1)..])).ToList();
        Assert.Superset(new HashSet<string> { "elementwise.cu", "attention.cu", "attention_hopper.cu", "decode.cu", "apb.cu", "random.cu" },
            kernels.Select(k => k.File).ToHashSet());
        foreach (var (resource, file) in kernels)
        {
            using var r = new StreamReader(asm.GetManifestResourceStream(resource)!);
            string source = r.ReadToEnd();
            Assert.Equal(source, KernelCompiler.Source(file)); // the text the backend compiles under that name
            AssertIncludesOnlyEmbeddedHeaders(file, source);
        }
        // Headers are no kernel sources: Source() must not pick bf16.cuh for a name that ends the same way.
        Assert.Throws<InvalidOperationException>(() => KernelCompiler.Source("bf16.cu"));
    }

    /// <summary>
    /// APB_KERNEL_SOURCES: a file in the folder replaces the embedded text of its name, a file not there keeps the
    /// embedded one, and a header new in the folder is offered to NVRTC with the embedded ones.
    /// </summary>
    [Fact]
    public void AnOverrideFolderReplacesOnlyTheFilesItHolds()
    {
        using var tmp = new TempDir();
        string dir = tmp.Path;
        File.WriteAllText(tmp.File("attention.cu"), "// an edited attention.cu\n");
        File.WriteAllText(tmp.File("bf16.cuh"), "// an edited bf16.cuh\n");
        File.WriteAllText(tmp.File("new_helper.cuh"), "// a header the embedded set lacks\n");
        Assert.Equal("// an edited attention.cu\n", KernelCompiler.Source("attention.cu", dir));
        Assert.Equal(KernelCompiler.Source("decode.cu"), KernelCompiler.Source("decode.cu", dir));
        var headers = KernelCompiler.Headers(dir);
        Assert.Equal("// an edited bf16.cuh\n", headers.Single(h => h.Name == "bf16.cuh").Text);
        Assert.Contains(headers, h => h.Name == "new_helper.cuh");
        Assert.Equal(KernelCompiler.Headers().Count + 1, headers.Length);
        // The text is in the cache key, so an edited file never reuses the embedded file's cubin.
        var options = KernelCompiler.Options("sm_90a");
        Assert.NotEqual(KernelCompiler.CacheKey(KernelCompiler.Source("attention.cu"), KernelCompiler.Headers(), options, "sm_90a", "12.8"),
            KernelCompiler.CacheKey(KernelCompiler.Source("attention.cu", dir), headers, options, "sm_90a", "12.8"));
    }

    /// <summary>
    /// A kernel the host launches but an APB_KERNEL_SOURCES text lacks (an older file timed with a newer binary): the
    /// failed lookup is explained by where the text came from; with the embedded text there is nothing to add.
    /// </summary>
    [Fact]
    public void AKernelMissingFromAnOverrideTextIsExplained()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("attention_hopper.cu"), "// an older attention_hopper.cu\n");
        string why = KernelCompiler.OverrideMissingKernel("attention_hopper.cu", "apb_attention_hopper_qk8_chunk_d128", dir.Path)!;
        Assert.Contains("kernel apb_attention_hopper_qk8_chunk_d128 is not in the module compiled from " + dir.File("attention_hopper.cu"), why);
        Assert.Contains("older (or other) commit than the binary", why);
        Assert.Contains("unset APB_KERNEL_SOURCES", why);
        // A file the folder does not hold was compiled from the embedded text: no override to blame.
        Assert.Null(KernelCompiler.OverrideMissingKernel("decode.cu", "apb_decode_split_d64", dir.Path));
        Assert.Null(KernelCompiler.OverrideMissingKernel("attention_hopper.cu", "apb_attention_hopper_d128", null));
    }

    /// <summary>APB_ATTENTION_PAIRS: which one-pass Hopper calls run as pairs of blocks; anything else is refused by name.</summary>
    [Fact]
    public void AttentionPairsAreReadFromTheEnvironmentValue()
    {
        Assert.Equal(AttentionPairing.NonCausal, AttentionPairings.Parse(null));
        Assert.Equal(AttentionPairing.NonCausal, AttentionPairings.Parse(""));
        Assert.Equal(AttentionPairing.Off, AttentionPairings.Parse("off"));
        Assert.Equal(AttentionPairing.NonCausal, AttentionPairings.Parse("noncausal"));
        Assert.Equal(AttentionPairing.All, AttentionPairings.Parse("all"));
        var e = Assert.Throws<ApbException>(() => AttentionPairings.Parse("1"));
        Assert.Contains("APB_ATTENTION_PAIRS=1: give off, noncausal or all", e.Message);
    }

    /// <summary>The pair kernels (each a cluster of 2 blocks) and the persistent ones are in the embedded Hopper source for both head dims.</summary>
    [Fact]
    public void ThePairKernelsAreBuiltWithTheHopperKernels()
    {
        string hopper = KernelCompiler.Source("attention_hopper.cu");
        Assert.Contains("__cluster_dims__(2, 1, 1)", hopper);
        Assert.Contains("\napb_attention_hopper_pair_d##D(", hopper);
        Assert.Contains("\napb_attention_hopper_persistent_d##D(", hopper);
        Assert.Contains("HOP_ENTRIES(64)", hopper);
        Assert.Contains("HOP_ENTRIES(128)", hopper);
    }

    [Fact]
    public void DecodeAndApbKernelsAreInTheEmbeddedSources()
    {
        string decode = KernelCompiler.Source("decode.cu"), apb = KernelCompiler.Source("apb.cu");
        foreach (var name in new[] { "apb_decode_split_d64", "apb_decode_split_d128", "apb_decode_merge" })
            Assert.Contains($" {name}(", decode);
        foreach (var name in new[] { "apb_head_dot", "apb_group_mean", "apb_gather_head_rows_u16", "apb_max_pool5", "apb_topk_rows", "apb_concat3", "apb_silu_linear_narrow" })
            Assert.Contains($" {name}(", apb);
    }

    [Theory]
    [InlineData(4096, 0x1000, "apb_rms_norm_v2", 256)]   // the 8B model's rows: 512 chunks, 2 per thread
    [InlineData(8192, 0x1000, "apb_rms_norm_v4", 256)]   // the widest chunked row
    [InlineData(3584, 0x1000, "apb_rms_norm_v2", 224)]   // Qwen2.5-7B: 448 chunks
    [InlineData(128, 0x1000, "apb_rms_norm_v1", 32)]     // a q/k head norm: one warp
    [InlineData(1000, 0x1000, "apb_rms_norm_v1", 128)]   // 125 chunks, rounded up to whole warps
    [InlineData(1001, 0x1000, "apb_rms_norm", 256)]      // not whole 16-byte chunks: the column loop
    [InlineData(16384, 0x1000, "apb_rms_norm", 256)]     // wider than 8 x 4 x 256
    [InlineData(4096, 0x1008, "apb_rms_norm", 256)]      // a row slice that is not 16-byte aligned
    public void RowNormsTakeTheChunkedKernelsWhereTheyFit(int cols, long address, string kernel, int threads)
    {
        Assert.Equal((kernel, (uint)threads), CudaBackend.NormKernel(add: false, cols, 0x2000, (ulong)address));
        var (added, addThreads) = CudaBackend.NormKernel(add: true, cols, 0x2000, (ulong)address, 0x3000);
        Assert.Equal(kernel.Replace("apb_rms_norm", "apb_add_rms_norm"), added);
        Assert.Equal((uint)threads, addThreads);
    }

    [Theory]
    [InlineData(1, 128, true, true, AttentionKernel.SplitKv)]      // a decode step
    [InlineData(16, 64, true, false, AttentionKernel.SplitKv)]
    [InlineData(17, 128, true, true, AttentionKernel.TensorCore)]   // too few rows for a 128-row Hopper tile
    [InlineData(64, 128, true, true, AttentionKernel.Hopper)]
    [InlineData(64, 128, true, false, AttentionKernel.TensorCore)]  // not an sm_90 device
    [InlineData(100, 32, true, true, AttentionKernel.Generic)]      // head dim the tensor-core kernels do not take
    [InlineData(1, 128, false, true, AttentionKernel.Generic)]      // rows not 16-byte aligned
    public void AutoPicksOneKernelByShapeAndDevice(int tq, int d, bool aligned, bool hopper, AttentionKernel want) =>
        Assert.Equal(want, CudaBackend.ChooseAttentionKernel(AttentionKernel.Auto, tq, d, aligned, hopper));

    [Theory]
    [InlineData(AttentionKernel.Hopper, 256, 128, true, false, "sm_90")]
    [InlineData(AttentionKernel.SplitKv, 17, 128, true, true, "at most 16 query rows")]
    [InlineData(AttentionKernel.TensorCore, 100, 32, true, true, "head dim 64 or 128")]
    [InlineData(AttentionKernel.Hopper, 256, 128, false, true, "aligned")]
    [InlineData(AttentionKernel.Generic, 10, 512, true, true, "256")]
    public void AForcedKernelThatCannotTakeTheCallSaysWhy(AttentionKernel forced, int tq, int d, bool aligned, bool hopper, string why)
    {
        var e = Assert.Throws<ArgumentException>(() => CudaBackend.ChooseAttentionKernel(forced, tq, d, aligned, hopper));
        Assert.Contains(why, e.Message);
        // Any kernel that can take the call is kept as forced, e.g. the mma.sync kernel for a single row.
        Assert.Equal(AttentionKernel.TensorCore, CudaBackend.ChooseAttentionKernel(AttentionKernel.TensorCore, 1, 128, true, true));
    }

    [Fact]
    public void PoolRoundsSizesSoBlocksAreReused()
    {
        Assert.Equal(512, DeviceMemory.RoundedSize(1));
        Assert.Equal(1024, DeviceMemory.RoundedSize(513));
        Assert.Equal(2L << 20, DeviceMemory.RoundedSize((2L << 20) - 1));
        Assert.Equal(4L << 20, DeviceMemory.RoundedSize((2L << 20) + 1));
    }

    [Fact]
    public void DoctorExitsZeroAndSaysWhetherThereIsAGpu()
    {
        var (rc, text, _) = CliRun.Apb("doctor", "--no-compile");
        Assert.Equal(0, rc);
        if (GpuFactAttribute.Probe() is null)
            Assert.Contains("cuda:0", text);
        else
        {
            Assert.Contains("no GPU available", text);
            Assert.Contains("load trace:", text);
            Assert.Contains("libcuda.so.1", text);
        }
    }

    [Fact]
    public void CudaDeviceWithoutAGpuIsAClearError()
    {
        if (GpuFactAttribute.Probe() is null) return; // meaningful only where there is no GPU
        var (rc, _, err) = CliRun.Apb("logits", "--device", "cuda", "--ids", "1,2,3", "--model", Repo.Fixture("llama-tiny"));
        Assert.Equal(1, rc);
        Assert.Contains("no CUDA driver found", err);
    }

    [Fact]
    public void OutOfMemoryIsKnownByItsTypeThroughTheRankGroupsWrapping()
    {
        var oom = new DeviceOutOfMemoryException("a [131072, 4096] BF16 tensor needs 1.00 GiB of GPU memory but only 0.5 GiB is free");
        Assert.True(DeviceOutOfMemoryException.In(oom));
        Assert.True(DeviceOutOfMemoryException.In(new ApbException("rank 1 failed in layer 3 attention: ...", oom)));
        Assert.False(DeviceOutOfMemoryException.In(new ApbException("not enough GPU memory to say so by type")));
        Assert.False(DeviceOutOfMemoryException.In(null));
    }
}
