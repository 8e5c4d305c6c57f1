using System.Runtime.InteropServices;
using Apb.Backends.Cuda.Native;
using Apb.Checkpoints;

namespace Apb.Backends.Cuda;

/// <summary>
/// Which attention kernel to run; <see cref="CudaBackend.ChooseAttentionKernel"/> resolves Auto and checks a forced one.
/// TensorCore is the mma.sync kernel (sm_80+), Hopper the wgmma/TMA one (sm_90), SplitKv the decode kernel (at most
/// 16 query rows). tests/Apb.Gpu.Tests checks every kernel; `apb bench kernel attention|decode` times them.
/// </summary>
public enum AttentionKernel { Auto, Generic, TensorCore, Hopper, SplitKv }

/// <summary>Which one-pass calls of the Hopper kernel run as pairs of blocks sharing K/V (<see cref="CudaBackend.AttentionPairs"/>).</summary>
public enum AttentionPairing { Off, NonCausal, All }

/// <summary>APB_ATTENTION_PAIRS's values, as <see cref="AttentionKernels"/> reads APB_ATTENTION.</summary>
public static class AttentionPairings
{
    /// <summary>off, noncausal (or unset: the default), all; anything else is refused by name (a typo must not time the wrong kernel).</summary>
    public static AttentionPairing Parse(string? value) => value switch
    {
        "off" => AttentionPairing.Off,
        null or "" or "noncausal" => AttentionPairing.NonCausal,
        "all" => AttentionPairing.All,
        _ => throw new ApbException($"APB_ATTENTION_PAIRS={value}: give off, noncausal or all (which one-pass Hopper attention calls run as " +
                                    "pairs of blocks sharing their K/V tiles), or unset it for the default, noncausal"),
    };
}

/// <summary>The attention kernels' names in reports and in APB_ATTENTION (one table, so they cannot drift apart).</summary>
public static class AttentionKernels
{
    public static string Name(AttentionKernel k) => k switch
    {
        AttentionKernel.Hopper => "hopper",
        AttentionKernel.SplitKv => "split-kv",
        AttentionKernel.TensorCore => "mma2",
        AttentionKernel.Generic => "generic",
        _ => "auto",
    };

    /// <summary>A name (or an older alias) to its kernel; anything else, unset included, is Auto.</summary>
    public static AttentionKernel Parse(string? name) => name?.ToLowerInvariant() switch
    {
        "generic" => AttentionKernel.Generic,
        "mma2" or "mma" or "tensorcore" => AttentionKernel.TensorCore,
        "hopper" or "wgmma" => AttentionKernel.Hopper,
        "split-kv" or "decode" => AttentionKernel.SplitKv,
        _ => AttentionKernel.Auto,
    };
}

/// <summary>
/// The CUDA backend: bf16 activations on one GPU, fp32 accumulation in every kernel, LSE and merges in fp32, GEMMs in
/// cuBLASLt, our own kernels (compiled by NVRTC) for everything else. Ops are queued on one stream and return at once;
/// Download and Synchronize wait. Like every backend it is single-threaded: one instance per rank.
/// </summary>
public sealed unsafe partial class CudaBackend : IBackend
{
    const string Elementwise = "elementwise.cu";
    const string AttentionFile = "attention.cu";
    const string ApbFile = "apb.cu";

    public CudaContext Context { get; }
    public DeviceMemory Pool { get; }
    readonly Gemm _gemm;
    readonly HashSet<nint> _raisedSmem = new();
    ulong _ints;          // device scratch for ids / positions / row indices
    long _intsCapacity;
    int[] _ropeArgs = new int[256]; // host staging of one rope call's positions and inv_freq bits
    void* _pinned;        // pinned host staging for uploads, downloads and weight loads
    long _pinnedBytes;
    bool _disposed;
    HostTransfers _transfers;

    public string Name => $"cuda:{Context.Device.Ordinal}";
    public AttentionKernel AttentionKernel { get; set; } = AttentionKernels.Parse(Environment.GetEnvironmentVariable("APB_ATTENTION"));
    /// <summary>Gemm.Tune (APB_GEMM_TUNE): a prefill-sized product's first call picks the fastest of cuBLASLt's candidates.</summary>
    public bool GemmTune { get => _gemm.Tune; set => _gemm.Tune = value; }

    public CudaBackend(int device = 0)
    {
        Driver.Initialize();
        Context = new CudaContext(device);
        Pool = new DeviceMemory(Context);
        try
        {
            _gemm = new Gemm(Context, Pool);
        }
        catch
        {
            Pool.Dispose();
            Context.Dispose();
            throw;
        }
    }

    static CudaTensor C(Tensor t) => t as CudaTensor ?? throw new ArgumentException($"{t} does not belong to the CUDA backend");
    static CudaWeight C(IWeight w) => w as CudaWeight ?? throw new ArgumentException($"weight {w.Name} does not belong to the CUDA backend");

    static CudaTensor Bf16(Tensor t, string op)
    {
        var c = C(t);
        if (c.DType != CudaDType.BF16) throw new ArgumentException($"{op}: {c} must be bf16");
        return c;
    }

    static void Same(Tensor a, Tensor b, string op)
    {
        if (a.Rows != b.Rows || a.Cols != b.Cols) throw new ArgumentException($"{op}: shapes {a} and {b} differ");
    }

    // ---------------------------------------------------------------------------------------------------- memory

    public Tensor Allocate(int rows, int cols) => Allocate(rows, cols, CudaDType.BF16);

    /// <summary>
    /// An fp32 tensor, for LSE rows: IBackend.Allocate gives bf16, whose 8-bit mantissa would put a 1e-2 relative error
    /// into every merge weight. Attention and MergeAttention accept both, exactly in fp32 and rounded in bf16.
    /// </summary>
    public CudaTensor AllocateF32(int rows, int cols) => Allocate(rows, cols, CudaDType.F32);
    // LSE and merge weights stay fp32 on the GPU: the strategies ask through the interface.
    Tensor IBackend.AllocateF32(int rows, int cols) => AllocateF32(rows, cols);

    public CudaTensor Allocate(int rows, int cols, CudaDType dtype)
    {
        if (rows < 0 || cols <= 0) throw new ArgumentException($"cannot allocate a [{rows}, {cols}] tensor");
        Enter();
        long bytes = (long)rows * cols * (dtype switch { CudaDType.BF16 => 2, CudaDType.U8 => 1, _ => 4 });
        return new CudaTensor(this, Pool.Rent(bytes, $"a [{rows}, {cols}] {dtype} tensor"), rows, cols, dtype, owns: true);
    }

    void Enter()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Context.MakeCurrent();
    }

    void* Pinned(long bytes)
    {
        if (bytes <= _pinnedBytes) return _pinned;
        Context.Synchronize(); // a queued copy may still read the old buffer
        if (_pinned != null) Driver.cuMemFreeHost(_pinned);
        _pinned = null;
        _pinnedBytes = 0;
        void* p;
        Driver.Check(Driver.cuMemAllocHost(&p, (nuint)bytes), $"cuMemAllocHost({bytes} bytes)");
        _pinned = p;
        _pinnedBytes = bytes;
        return p;
    }

    const long StagingBytes = 32L << 20;

    public HostTransfers Transfers => _transfers;

    /// <summary>Every host-to-device copy this backend queues goes through here, so <see cref="Transfers"/> misses none.</summary>
    internal void CopyToDevice(ulong dst, void* src, long bytes, string call)
    {
        Driver.Check(Driver.cuMemcpyHtoDAsync(dst, src, (nuint)bytes, Context.Stream), call);
        _transfers = _transfers with { ToDeviceBytes = _transfers.ToDeviceBytes + bytes, ToDeviceCopies = _transfers.ToDeviceCopies + 1 };
    }

    /// <summary>Every device-to-host copy this backend queues goes through here (the caller synchronizes before reading).</summary>
    internal void CopyToHost(void* dst, ulong src, long bytes, string call)
    {
        Driver.Check(Driver.cuMemcpyDtoHAsync(dst, src, (nuint)bytes, Context.Stream), call);
        _transfers = _transfers with { ToHostBytes = _transfers.ToHostBytes + bytes, ToHostCopies = _transfers.ToHostCopies + 1 };
    }

    /// <summary>
    /// The backend's own scratch (<paramref name="block"/> of <paramref name="capacity"/> bytes), grown to at least
    /// <paramref name="bytes"/> and reused call after call. Growing gives the old block back: work queued on the stream
    /// that still reads it is ordered before any reuse of its memory (one stream per backend).
    /// </summary>
    ulong Scratch(ref ulong block, ref long capacity, long bytes, long minimum, string what)
    {
        if (bytes <= capacity) return block;
        if (block != 0) Pool.Return(block);
        capacity = Math.Max(bytes, minimum);
        return block = Pool.Rent(capacity, what, backendOwned: true);
    }

    /// <summary>Host ints to the device index scratch.</summary>
    ulong UploadInts(ReadOnlySpan<int> values)
    {
        Scratch(ref _ints, ref _intsCapacity, Math.Max(values.Length, 1) * 4L, 4096, "index scratch");
        fixed (int* p = values) UploadSmall(_ints, p, values.Length * 4L, "indices");
        return _ints;
    }

    byte* _ring;      // pinned staging for small uploads, used round and round
    long _ringAt;
    const long RingBytes = 4L << 20, RingLargest = 64L << 10;

    /// <summary>
    /// A small host -> device copy (index lists, address tables: a few hundred bytes, several per layer of a batched
    /// decode step), staged in a pinned ring so that it queues on the stream like a kernel: from pageable memory the
    /// driver may make the host wait for it. The source may be reused as soon as this returns. When the ring wraps, the
    /// host waits for the stream once (every copy still reading the ring has run), about once per 4 MB staged.
    /// </summary>
    void UploadSmall(ulong dst, void* src, long bytes, string what)
    {
        if (bytes == 0) return;
        if (bytes > RingLargest)
        {
            CopyToDevice(dst, src, bytes, $"cuMemcpyHtoDAsync({what})");
            return;
        }
        if (_ring == null)
        {
            void* p;
            Driver.Check(Driver.cuMemAllocHost(&p, (nuint)RingBytes), $"cuMemAllocHost({RingBytes} bytes of upload staging)");
            _ring = (byte*)p;
            _ringAt = 0;
        }
        long at = RingSlot(bytes);
        Buffer.MemoryCopy(src, _ring + at, bytes, bytes);
        CopyToDevice(dst, _ring + at, bytes, $"cuMemcpyHtoDAsync({what})");
        _ringAt = at + bytes;
    }

    /// <summary>
    /// Where the next staged upload of <paramref name="bytes"/> goes: after the last one, 16-byte aligned, or at the
    /// ring's start once the host has waited for the stream (every copy still reading the ring has run).
    /// </summary>
    long RingSlot(long bytes)
    {
        long at = (_ringAt + 15) & ~15L;
        if (at + bytes <= RingBytes) return at;
        Context.Synchronize();
        return _ringAt = 0;
    }

    // ---------------------------------------------------------------------------------------------------- weights

    /// <summary>Random weights filled on the device by a kernel (<see cref="RandomFill"/>): no host copy of the model.</summary>
    public IWeight LoadRandom(string name, int rows, int cols, ulong key, float scale, float offset) =>
        RandomFill.Weight(this, name, rows, cols, key, scale, offset);

    public IWeight Load(WeightView w)
    {
        Enter();
        if (w.Shape.Length > 2)
            throw new ApbException($"tensor '{w.Name}' has {w.Shape.Length} dimensions; weights are matrices or vectors");
        long n = w.ElementCount;
        ulong dst = Pool.Rent(n * 2, $"weight {w.Name}");
        UploadAsBf16(w.Data, w.DType, n, dst, w.Name);
        return new CudaWeight(w.Name, w.Rows, w.Cols, dst);
    }

    /// <summary>
    /// Streams n elements from host memory (the memory-mapped checkpoint) to bf16 on the device, in chunks through pinned
    /// memory: bf16 goes straight to its place, f16/f32 land in a device staging area and a kernel converts them. No
    /// managed copy of the tensor is ever made.
    /// </summary>
    void UploadAsBf16(byte* src, DType type, long n, ulong dst, string what)
    {
        int size = DTypes.Size(type);
        if (type is not (DType.BF16 or DType.F16 or DType.F32))
            throw new ApbException($"weight {what} is {DTypes.Name(type)}; the CUDA backend loads F32, F16 or BF16");
        var pinned = (byte*)Pinned(StagingBytes);
        long chunk = StagingBytes / size;
        ulong staging = 0;
        ulong to = 0;
        long count = 0;
        void** args = stackalloc void*[] { &staging, &to, &count };
        if (type != DType.BF16) staging = Pool.Rent(StagingBytes, "weight conversion staging");
        try
        {
            for (long i = 0; i < n; i += chunk)
            {
                count = Math.Min(chunk, n - i);
                // The next two chunks are read from disk in the background while this one is copied (the source is the
                // memory-mapped checkpoint): loading streams at disk speed instead of one page fault at a time.
                SafeTensorsFile.WillNeed(src + (i + count) * size, Math.Min(2 * chunk, n - i - count) * size);
                Context.Synchronize(); // the pinned buffer is free again only when the previous chunk's copy is done
                Buffer.MemoryCopy(src + i * size, pinned, StagingBytes, count * size);
                if (type == DType.BF16)
                {
                    CopyToDevice(dst + (ulong)(i * 2), pinned, count * 2, $"cuMemcpyHtoDAsync(weight {what})");
                    continue;
                }
                CopyToDevice(staging, pinned, count * size, $"cuMemcpyHtoDAsync(weight {what})");
                to = dst + (ulong)(i * 2);
                var fn = type == DType.F32 ? "apb_convert_f32_bf16" : "apb_convert_f16_bf16";
                Context.Launch(Context.Function(Elementwise, fn), fn, (GridFor(count), 1, 1), 256, 0, args);
            }
            Context.Synchronize();
        }
        finally
        {
            if (staging != 0) Pool.Return(staging);
        }
    }

    /// <summary>
    /// Kernel <paramref name="fn"/> of <paramref name="file"/>, allowed up to <paramref name="maxSmem"/> bytes of dynamic
    /// shared memory: above the default 48 KB the limit must be raised on the function, once.
    /// </summary>
    nint KernelWithSmem(string file, string fn, uint maxSmem)
    {
        nint f = Context.Function(file, fn);
        if (maxSmem > 48 * 1024 && _raisedSmem.Add(f))
            Driver.Check(Driver.cuFuncSetAttribute(f, Driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)maxSmem),
                $"cuFuncSetAttribute({fn}, {maxSmem} bytes of shared memory)");
        return f;
    }

    /// <summary>Blocks of 256 threads for a grid-stride loop over n elements (at most 65536 blocks).</summary>
    internal static uint GridFor(long n) => (uint)Math.Clamp((n + 255) / 256, 1, 65536);

    // ---------------------------------------------------------------------------------------------------- transfers

    public void Upload(ReadOnlySpan<float> src, Tensor dst)
    {
        var d = C(dst);
        if (d.DType == CudaDType.U8) throw new ArgumentException($"upload of floats into {d}: a byte tensor takes bytes (UploadBytes)");
        if (src.Length != (long)d.Rows * d.Cols) throw new ArgumentException($"upload of {src.Length} floats into {d}");
        Enter();
        var pinned = Pinned(StagingBytes);
        long chunk = StagingBytes / 4;
        for (long i = 0; i < src.Length; i += chunk)
        {
            int count = (int)Math.Min(chunk, src.Length - i);
            Context.Synchronize();
            var part = src.Slice((int)i, count);
            if (d.DType == CudaDType.F32)
                part.CopyTo(new Span<float>(pinned, count));
            else
            {
                var h = new Span<ushort>(pinned, count);
                for (int j = 0; j < count; j++) h[j] = DTypes.FloatToBF16(part[j]);
            }
            CopyToDevice(d.Ptr + (ulong)(i * d.ElementSize), pinned, (long)count * d.ElementSize, "cuMemcpyHtoDAsync(upload)");
        }
        Context.Synchronize();
    }

    public void Download(Tensor src, Span<float> dst)
    {
        var s = C(src);
        if (s.DType == CudaDType.U8) throw new ArgumentException($"download of {s} into floats: a byte tensor gives bytes (DownloadBytes)");
        long n = (long)s.Rows * s.Cols;
        if (dst.Length < n) throw new ArgumentException($"download of {s} into {dst.Length} floats");
        Enter();
        var pinned = Pinned(StagingBytes);
        long chunk = StagingBytes / 4;
        for (long i = 0; i < n; i += chunk)
        {
            int count = (int)Math.Min(chunk, n - i);
            CopyToHost(pinned, s.Ptr + (ulong)(i * s.ElementSize), (long)count * s.ElementSize, "cuMemcpyDtoHAsync(download)");
            Context.Synchronize();
            var part = dst.Slice((int)i, count);
            if (s.DType == CudaDType.F32) new Span<float>(pinned, count).CopyTo(part);
            else
            {
                var h = new ReadOnlySpan<ushort>(pinned, count);
                for (int j = 0; j < count; j++) part[j] = DTypes.BF16ToFloat(h[j]);
            }
        }
    }

    public void Copy(Tensor src, int srcRow, int srcCol, Tensor dst, int dstRow, int dstCol, int rows, int cols)
    {
        var s = C(src); var d = C(dst);
        if (srcRow < 0 || srcCol < 0 || srcRow + rows > s.Rows || srcCol + cols > s.Cols ||
            dstRow < 0 || dstCol < 0 || dstRow + rows > d.Rows || dstCol + cols > d.Cols)
            throw new ArgumentException($"copy of [{rows}, {cols}] from {s}@({srcRow},{srcCol}) to {d}@({dstRow},{dstCol}) is out of bounds");
        if (s.DType != d.DType) throw new ArgumentException($"copy from {s} to {d}: element types differ");
        if (rows == 0 || cols == 0) return;
        if (s.DType == CudaDType.U8 && (cols != s.Cols || cols != d.Cols))
            throw new ArgumentException($"copy of [{rows}, {cols}] from {s} to {d}: byte tensors (fp8 cache rows) copy whole rows only");
        Enter();
        int es = s.ElementSize;
        ulong sp = s.Ptr + (ulong)(((long)srcRow * s.Cols + srcCol) * es);
        ulong dp = d.Ptr + (ulong)(((long)dstRow * d.Cols + dstCol) * es);
        if (cols == s.Cols && cols == d.Cols)
        {
            // Whole rows are one contiguous range: the copy engine does it.
            Driver.Check(Driver.cuMemcpyDtoDAsync(dp, sp, (nuint)((long)rows * cols * es), Context.Stream), "cuMemcpyDtoDAsync");
            return;
        }
        long ss = s.Cols, ds = d.Cols;
        string fn = es == 2 ? "apb_copy2d_u16" : "apb_copy2d_u32";
        void** args = stackalloc void*[] { &sp, &ss, &dp, &ds, &rows, &cols };
        Context.Launch(Context.Function(Elementwise, fn), fn, ((uint)Math.Min((cols + 255) / 256, 64), (uint)Math.Min(rows, 65535), 1), 256, 0, args);
    }

    ulong _scatterTable;     // destination addresses of ScatterRows, uploaded with each call
    long _scatterTableBytes;

    /// <summary>
    /// <see cref="IBackend.ScatterRows"/> in one launch: the destinations' addresses go up in one copy and each block
    /// copies one row (the KV appends of a batched decode step were one copy per sequence, per layer, for K and for V).
    /// </summary>
    public void ScatterRows(Tensor src, IReadOnlyList<Tensor> destinations)
    {
        var s = C(src);
        int n = destinations.Count;
        if (n != s.Rows) throw new ArgumentException($"scatter of {s.Rows} rows into {n} destinations");
        if (n == 0) return;
        var d = new CudaTensor[n];
        for (int i = 0; i < n; i++)
        {
            d[i] = C(destinations[i]);
            if (d[i].Rows != 1 || d[i].Cols != s.Cols || d[i].DType != s.DType)
                throw new ArgumentException($"scatter: destination {i} is {d[i]}, not one row like those of {s}");
        }
        long rowBytes = (long)s.Cols * s.ElementSize;
        if (rowBytes % 16 != 0 || s.Ptr % 16 != 0 || d.Any(t => t.Ptr % 16 != 0))
        {
            for (int i = 0; i < n; i++) Copy(s, i, 0, d[i], 0, 0, 1, s.Cols);
            return;
        }
        Enter();
        // Made twice per layer of every batched decode step: on the stack up to any batch the scheduler runs.
        Span<ulong> table = n <= 1024 ? stackalloc ulong[n] : new ulong[n];
        for (int i = 0; i < n; i++) table[i] = d[i].Ptr;
        ulong tp = Scratch(ref _scatterTable, ref _scatterTableBytes, n * 8L, 4096, "scatter table");
        fixed (ulong* t = table) UploadSmall(tp, t, n * 8L, "scatter table");
        ulong sp = s.Ptr;
        int words = (int)(rowBytes / 16);
        void** args = stackalloc void*[] { &sp, &tp, &words };
        Context.Launch(Context.Function(Elementwise, "apb_scatter_rows"), "apb_scatter_rows", ((uint)n, 1, 1), 128, 0, args);
    }

    ulong _groupMeanPart; // partial sums of a long group mean (Passing.GroupMean)
    long _groupMeanPartBytes;
    ulong _argmax;        // the rows' argmax results before they are read back
    long _argmaxBytes;

    /// <summary>
    /// <see cref="IBackend.ArgMaxRows"/> on the device: a greedy step of B sequences reads back B ints instead of
    /// B vocabulary-wide rows (16 x 128K fp32 is 8 MB per step, copied and converted on the host while the GPU waits).
    /// </summary>
    public void ArgMaxRows(Tensor x, Span<int> result)
    {
        var xs = C(x);
        if (result.Length != xs.Rows) throw new ArgumentException($"argmax of {xs.Rows} rows into {result.Length} results");
        if (xs.Rows == 0) return;
        Enter();
        ulong op = Scratch(ref _argmax, ref _argmaxBytes, xs.Rows * 4L, 4096, "argmax results");
        ulong xp = xs.Ptr;
        int f32 = xs.DType == CudaDType.F32 ? 1 : 0, cols = xs.Cols;
        long stride = xs.Cols;
        void** args = stackalloc void*[] { &xp, &f32, &stride, &cols, &op };
        Context.Launch(Context.Function(Elementwise, "apb_argmax_rows"), "apb_argmax_rows", ((uint)xs.Rows, 1, 1), 512, 0, args);
        fixed (int* p = result) CopyToHost(p, op, result.Length * 4L, "cuMemcpyDtoHAsync(argmax)");
        Context.Synchronize();
    }

    // ---------------------------------------------------------------------------------------------------- model ops

    public void Embed(ReadOnlySpan<int> ids, IWeight table, Tensor output)
    {
        var t = C(table); var o = Bf16(output, "embed");
        if (o.Rows != ids.Length || o.Cols != t.Cols) throw new ArgumentException($"embed of {ids.Length} ids into {o}");
        foreach (int id in ids)
            if ((uint)id >= (uint)t.Rows) throw new ApbException($"token id {id} is outside the vocabulary (0..{t.Rows - 1})");
        if (ids.Length == 0) return;
        Enter();
        ulong idp = UploadInts(ids);
        ulong tp = t.Ptr, op = o.Ptr;
        int cols = t.Cols;
        bool vector = Aligned16(cols, tp, op);
        if (vector) cols /= 8; // apb_embed_v counts 16-byte chunks
        void** args = stackalloc void*[] { &idp, &tp, &op, &cols };
        string fn = vector ? "apb_embed_v" : "apb_embed";
        Context.Launch(Context.Function(Elementwise, fn), fn, ((uint)ids.Length, 1, 1), 256, 0, args);
    }

    public void RmsNorm(Tensor x, IWeight weight, float eps, Tensor output)
    {
        var xs = Bf16(x, "rms_norm"); var o = Bf16(output, "rms_norm"); var w = C(weight);
        Same(xs, o, "rms_norm");
        if ((long)w.Rows * w.Cols != xs.Cols) throw new ArgumentException($"rms_norm: weight {w.Name} has {w.Rows * w.Cols} elements for rows of {xs.Cols}");
        if (xs.Rows == 0) return;
        Enter();
        ulong xp = xs.Ptr, wp = w.Ptr, op = o.Ptr;
        int cols = xs.Cols;
        void** args = stackalloc void*[] { &xp, &wp, &op, &cols, &eps };
        var (fn, threads) = NormKernel(add: false, cols, xp, wp, op);
        Context.Launch(Context.Function(Elementwise, fn), fn, ((uint)xs.Rows, 1, 1), threads, 0, args);
    }

    /// <summary>x += y, then output = rms_norm(x) * weight: one block per row reads x and y once, writes x and output.</summary>
    public void AddRmsNorm(Tensor x, Tensor y, IWeight weight, float eps, Tensor output)
    {
        var xs = Bf16(x, "add_rms_norm"); var ys = Bf16(y, "add_rms_norm"); var o = Bf16(output, "add_rms_norm"); var w = C(weight);
        Same(xs, ys, "add_rms_norm"); Same(xs, o, "add_rms_norm");
        if ((long)w.Rows * w.Cols != xs.Cols) throw new ArgumentException($"add_rms_norm: weight {w.Name} has {w.Rows * w.Cols} elements for rows of {xs.Cols}");
        if (o.Ptr == xs.Ptr || o.Ptr == ys.Ptr) throw new ArgumentException($"add_rms_norm: the output {o} must not alias the residual or the addend");
        if (xs.Rows == 0) return;
        Enter();
        ulong xp = xs.Ptr, yp = ys.Ptr, wp = w.Ptr, op = o.Ptr;
        int cols = xs.Cols;
        void** args = stackalloc void*[] { &xp, &yp, &wp, &op, &cols, &eps };
        var (fn, threads) = NormKernel(add: true, cols, xp, wp, op, yp);
        Context.Launch(Context.Function(Elementwise, fn), fn, ((uint)xs.Rows, 1, 1), threads, 0, args);
    }

    /// <summary>Whether rows of <paramref name="cols"/> bf16 at these addresses are whole, aligned 16-byte chunks.</summary>
    static bool Aligned16(int cols, params ReadOnlySpan<ulong> ptrs)
    {
        if (cols % 8 != 0) return false;
        foreach (var p in ptrs) if (p % 16 != 0) return false;
        return true;
    }

    /// <summary>
    /// A row norm's kernel (apb_rms_norm or, with <paramref name="add"/>, apb_add_rms_norm) and block size: the chunked
    /// kernels (_v1/_v2/_v4: each thread holds 1, 2 or 4 16-byte chunks of the row) for rows a multiple of 8 wide up to
    /// 8192, with the fewest chunks per thread that keep the block within 256 threads; the column loop (256 threads)
    /// otherwise. The names are literals: a decode step makes 65 of these calls.
    /// </summary>
    internal static (string Name, uint Threads) NormKernel(bool add, int cols, params ReadOnlySpan<ulong> ptrs)
    {
        if (!Aligned16(cols, ptrs) || cols > 8 * 4 * 256) return (add ? "apb_add_rms_norm" : "apb_rms_norm", 256);
        int chunks = cols / 8, perThread = chunks <= 256 ? 1 : chunks <= 512 ? 2 : 4;
        int threads = ((chunks + perThread - 1) / perThread + 31) / 32 * 32;
        string name = perThread switch
        {
            1 => add ? "apb_add_rms_norm_v1" : "apb_rms_norm_v1",
            2 => add ? "apb_add_rms_norm_v2" : "apb_rms_norm_v2",
            _ => add ? "apb_add_rms_norm_v4" : "apb_rms_norm_v4",
        };
        return (name, (uint)threads);
    }

    public void Linear(Tensor x, IWeight w, IWeight? bias, Tensor output)
    {
        var xs = Bf16(x, "linear");
        var p = Part(xs, w, bias, output, "linear");
        if (xs.Rows == 0) return;
        if (UsesGemv(xs))
        {
            Gemv(xs, p, default, default);
            return;
        }
        Enter();
        _gemm.Run(xs.Ptr, p.W, bias is null ? null : p.Bias, p.Y, xs.Rows, p.N, xs.Cols);
    }

    void Elementwise1(string fn, ulong a, long n)
    {
        void** args = stackalloc void*[] { &a, &n };
        Context.Launch(Context.Function(Elementwise, fn), fn, (GridFor(n), 1, 1), 256, 0, args);
    }

    public void AddInPlace(Tensor x, Tensor y)
    {
        var xs = Bf16(x, "add"); var ys = Bf16(y, "add");
        Same(xs, ys, "add");
        Enter();
        ulong xp = xs.Ptr, yp = ys.Ptr;
        long n = (long)xs.Rows * xs.Cols;
        void** args = stackalloc void*[] { &xp, &yp, &n };
        Context.Launch(Context.Function(Elementwise, "apb_add"), "apb_add", (GridFor(n), 1, 1), 256, 0, args);
    }

    public void SiluMul(Tensor gate, Tensor up, Tensor output)
    {
        var g = Bf16(gate, "silu_mul"); var u = Bf16(up, "silu_mul"); var o = Bf16(output, "silu_mul");
        Same(g, u, "silu_mul"); Same(g, o, "silu_mul");
        Enter();
        ulong gp = g.Ptr, up_ = u.Ptr, op = o.Ptr;
        long n = (long)g.Rows * g.Cols;
        void** args = stackalloc void*[] { &gp, &up_, &op, &n };
        // 16-byte chunks where the three addresses allow it (always, for tensors this backend allocated).
        bool vector = ((gp | up_ | op) & 15) == 0;
        string fn = vector ? "apb_silu_mul_v" : "apb_silu_mul";
        Context.Launch(Context.Function(Elementwise, fn), fn, (GridFor(vector ? Math.Max(n / 8, 1) : n), 1, 1), 256, 0, args);
    }

    public void Silu(Tensor x)
    {
        var xs = Bf16(x, "silu");
        Enter();
        Elementwise1("apb_silu", xs.Ptr, (long)xs.Rows * xs.Cols);
    }

    public void Rope(Tensor x, int heads, ReadOnlySpan<int> positions, RopeTable table)
    {
        var xs = Bf16(x, "rope");
        int d = table.HeadDim;
        if (xs.Cols != heads * d || positions.Length != xs.Rows)
            throw new ArgumentException($"rope on {xs} with {heads} heads of {d} and {positions.Length} positions");
        if (xs.Rows == 0) return;
        Enter();
        var (pos, inv) = RopeArgs(positions, table);
        ulong xp = xs.Ptr;
        float scale = table.AttentionScaling;
        void** args = stackalloc void*[] { &xp, &pos, &inv, &heads, &d, &scale };
        Context.Launch(Context.Function(Elementwise, "apb_rope"), "apb_rope", ((uint)xs.Rows, 1, 1), 128, 0, args);
    }

    /// <summary>
    /// From this many tokens RopeAppend runs apb_rope_append_rows (a block per token); below it, apb_rope_append (a block
    /// per token and head), whose many small blocks give a decode step's one token the lower latency.
    /// </summary>
    public const int RopeRowsMinTokens = 16;

    public void RopeAppend(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, ReadOnlySpan<int> positions, RopeTable table, Tensor kDst, Tensor vDst)
    {
        var qs = Bf16(q, "rope_append"); var ks = Bf16(k, "rope_append"); var vs = Bf16(v, "rope_append");
        var kd = Bf16(kDst, "rope_append"); var vd = Bf16(vDst, "rope_append");
        int d = table.HeadDim;
        if (qs.Cols != heads * d || ks.Cols != kvHeads * d || positions.Length != qs.Rows || ks.Rows != qs.Rows)
            throw new ArgumentException($"rope_append on q {qs} ({heads} heads) and k {ks} ({kvHeads} heads) of {d} with {positions.Length} positions");
        Same(ks, vs, "rope_append"); Same(ks, kd, "rope_append"); Same(ks, vd, "rope_append");
        if (qs.Rows == 0) return;
        Enter();
        var (pos, inv) = RopeArgs(positions, table);
        ulong qp = qs.Ptr, kp = ks.Ptr, vp = vs.Ptr, kdp = kd.Ptr, vdp = vd.Ptr;
        float scale = table.AttentionScaling;
        void** args = stackalloc void*[] { &qp, &kp, &vp, &kdp, &vdp, &pos, &inv, &heads, &kvHeads, &d, &scale };
        if (qs.Rows >= RopeRowsMinTokens && d % 16 == 0 && d <= 256 && ((qp | kp | vp | kdp | vdp) & 15) == 0)
        {
            // Many tokens: a block per token, cos and sin once per pair, 16-byte accesses.
            Context.Launch(Context.Function(Elementwise, "apb_rope_append_rows"), "apb_rope_append_rows", ((uint)qs.Rows, 1, 1), 256, 0, args);
            return;
        }
        // A few tokens (a decode step): one block per (token, head), a thread per rotated pair.
        uint threads = (uint)((d / 2 + 31) / 32 * 32);
        Context.Launch(Context.Function(Elementwise, "apb_rope_append"), "apb_rope_append", ((uint)qs.Rows, (uint)(heads + kvHeads), 1), threads, 0, args);
    }

    /// <summary>
    /// A rope call's positions and the table's frequencies on the device, as (positions, inv_freq) addresses. They go up
    /// together in one copy: a dynamic-NTK model rotates each call with the table for that call's length
    /// (RopeTable.ForLength), so frequencies are per call, not per model.
    /// </summary>
    (ulong Positions, ulong InvFreq) RopeArgs(ReadOnlySpan<int> positions, RopeTable table)
    {
        int t = positions.Length, half = table.InvFreq.Length;
        if (_ropeArgs.Length < t + half) _ropeArgs = new int[t + half];
        positions.CopyTo(_ropeArgs);
        for (int i = 0; i < half; i++) _ropeArgs[t + i] = BitConverter.SingleToInt32Bits(table.InvFreq[i]);
        ulong pos = RopeArgsOnDevice(_ropeArgs.AsSpan(0, t + half));
        return (pos, pos + (ulong)(t * 4L));
    }

    ulong _ropeDevice;            // the last rope call's positions and frequencies, on the device
    long _ropeDeviceBytes;
    int[] _ropeOnDevice = [];     // what _ropeDevice holds, to skip uploading it again
    int _ropeOnDeviceCount = -1;

    /// <summary>
    /// A rope call's arguments on the device, uploaded only when they differ from the last call's: a prefill rotates q
    /// and k of every layer at the same positions, so only its first rotation copies anything from the host. The block
    /// is only overwritten by a later copy on the same stream, after every kernel queued before it that reads it.
    /// </summary>
    ulong RopeArgsOnDevice(ReadOnlySpan<int> args)
    {
        if (_ropeOnDeviceCount == args.Length && args.SequenceEqual(_ropeOnDevice.AsSpan(0, args.Length))) return _ropeDevice;
        Scratch(ref _ropeDevice, ref _ropeDeviceBytes, Math.Max(args.Length, 1) * 4L, 4096, "rope arguments");
        if (_ropeOnDevice.Length < args.Length) _ropeOnDevice = new int[Math.Max(args.Length, 2 * _ropeOnDevice.Length)];
        args.CopyTo(_ropeOnDevice);
        _ropeOnDeviceCount = args.Length;
        fixed (int* p = args) UploadSmall(_ropeDevice, p, args.Length * 4L, "rope arguments");
        return _ropeDevice;
    }

    /// <summary>
    /// Attention with the kernel <see cref="AttentionKernel"/> asks for (Auto unless APB_ATTENTION or a caller set one).
    /// A sliding window runs on the generic kernel only (<see cref="ChooseAttentionKernel"/>).
    /// </summary>
    public void Attention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, AttentionMask mask, Tensor output, Tensor? lse, int window = 0)
    {
        var qs = Bf16(q, "attention"); var ks = Bf16(k, "attention"); var vs = Bf16(v, "attention"); var o = Bf16(output, "attention");
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0 || qs.Cols % heads != 0 || ks.Cols != kvHeads * (qs.Cols / heads) ||
            vs.Rows != ks.Rows || vs.Cols != ks.Cols || o.Rows != qs.Rows || o.Cols != qs.Cols ||
            (lse != null && (lse.Rows != qs.Rows || lse.Cols != heads)))
            throw new ArgumentException($"attention: q {qs} ({heads} heads), k {ks}, v {vs} ({kvHeads} kv heads), out {o}, lse {lse}");
        Cpu.CpuBackend.CheckWindow(mask, window);
        int Tq = qs.Rows, Tk = ks.Rows, d = qs.Cols / heads;
        if (Tq == 0) return;
        Enter();
        CudaTensor? l = lse is null ? null : C(lse);
        ulong qp = qs.Ptr, kp = ks.Ptr, vp = vs.Ptr, op = o.Ptr, lp = l?.Ptr ?? 0;
        int lseF32 = l?.DType == CudaDType.F32 ? 1 : 0;
        long qStride = qs.Cols, kStride = ks.Cols, oStride = o.Cols;
        float scale = 1f / MathF.Sqrt(d);
        int causal = mask == AttentionMask.Causal ? 1 : 0;
        bool aligned = (qp | kp | vp | op) % 16 == 0 && qStride % 8 == 0 && kStride % 8 == 0 && oStride % 8 == 0;
        var chosen = ChooseAttentionKernel(AttentionKernel, Tq, d, aligned, HopperAttentionAvailable, window);
        if (chosen == AttentionKernel.SplitKv)
            DecodeAttention(qs, ks, vs, heads, kvHeads, mask, o, l);
        else if (chosen == AttentionKernel.Hopper)
            AttentionHopper(qp, kp, vp, op, lp, lseF32, Tq, Tk, heads, kvHeads, d, qStride, kStride, oStride, scale, causal);
        else if (chosen == AttentionKernel.TensorCore)
        {
            string fn = d == 64 ? "apb_attention_mma2_d64" : "apb_attention_mma2_d128";
            // K and V tiles double-buffered: 2 stages x 2 tiles x 64 rows x (d + 8) bf16, above the 48 KB default at d = 128.
            uint smem = (uint)(2 * 2 * 64 * (d + 8) * 2);
            nint f = KernelWithSmem(AttentionFile, fn, smem);
            void** args = stackalloc void*[] { &qp, &kp, &vp, &op, &lp, &lseF32, &Tq, &Tk, &heads, &kvHeads, &qStride, &kStride, &oStride, &scale, &causal };
            Context.Launch(f, fn, ((uint)((Tq + 63) / 64), (uint)heads, 1), 128, smem, args);
        }
        else
        {
            const string fn = "apb_attention_generic";
            void** args = stackalloc void*[] { &qp, &kp, &vp, &op, &lp, &lseF32, &Tq, &Tk, &heads, &kvHeads, &d, &qStride, &kStride, &oStride, &scale, &causal, &window };
            Context.Launch(Context.Function(AttentionFile, fn), fn, ((uint)((Tq + 3) / 4), (uint)heads, 1), 128, 0, args);
        }
    }

    /// <summary>
    /// The one place a call's attention kernel is decided. Auto: the split-KV decode kernel for at most
    /// <see cref="DecodeMaxQueryRows"/> query rows, the Hopper kernel for at least <see cref="HopperMinRows"/> where the
    /// device has it, the mma.sync kernel otherwise; all three need head dim 64 or 128 and 16-byte aligned rows, else the
    /// generic kernel (head dim up to 256). A sliding window (<paramref name="window"/> &gt; 0, Mistral) runs on the
    /// generic kernel: the others take a causal flag only. A forced kernel that cannot take the call is an error that
    /// says why.
    /// </summary>
    public static AttentionKernel ChooseAttentionKernel(AttentionKernel requested, int tq, int d, bool aligned, bool hopperAvailable, int window = 0)
    {
        bool tensorCore = d is 64 or 128 && aligned;
        var chosen = requested != AttentionKernel.Auto ? requested
            : !tensorCore || window > 0 ? AttentionKernel.Generic
            : tq <= DecodeMaxQueryRows ? AttentionKernel.SplitKv
            : hopperAvailable && tq >= HopperMinRows ? AttentionKernel.Hopper
            : AttentionKernel.TensorCore;
        string? why = chosen switch
        {
            AttentionKernel.Generic when d > 256 => $"head dim {d} is above the generic kernel's 256",
            not AttentionKernel.Generic when window > 0 =>
                $"a sliding window of {window} keys runs on the generic kernel only (the {chosen} kernel has no window): unset APB_ATTENTION or use generic",
            AttentionKernel.TensorCore or AttentionKernel.Hopper or AttentionKernel.SplitKv when !tensorCore =>
                $"the {chosen} kernel needs head dim 64 or 128 and 16-byte aligned rows (got d={d}{(aligned ? "" : ", unaligned rows")})",
            AttentionKernel.Hopper when !hopperAvailable => "the Hopper kernel needs an sm_90 GPU and a driver that encodes TMA tensor maps (CUDA 12+)",
            AttentionKernel.SplitKv when tq > DecodeMaxQueryRows => $"the split-KV decode kernel takes at most {DecodeMaxQueryRows} query rows (got {tq}): use Auto",
            _ => null,
        };
        if (why != null) throw new ArgumentException($"attention: {why}");
        return chosen;
    }

    public void MergeAttention(Tensor acc, Tensor accLse, Tensor part, Tensor partLse, int heads)
    {
        var a = Bf16(acc, "merge"); var p = Bf16(part, "merge"); var la = C(accLse); var lp = C(partLse);
        Same(a, p, "merge"); Same(la, lp, "merge");
        if (la.DType != lp.DType) throw new ArgumentException($"merge: LSE tensors {la} and {lp} differ in element type");
        if (la.Rows != a.Rows || la.Cols != heads || a.Cols % heads != 0)
            throw new ArgumentException($"merge: acc {a}, lse {la}, {heads} heads");
        if (a.Rows == 0) return;
        Enter();
        ulong ap = a.Ptr, alp = la.Ptr, pp = p.Ptr, plp = lp.Ptr;
        int lseF32 = la.DType == CudaDType.F32 ? 1 : 0, d = a.Cols / heads;
        void** args = stackalloc void*[] { &ap, &alp, &pp, &plp, &lseF32, &heads, &d };
        Context.Launch(Context.Function(Elementwise, "apb_merge_attention"), "apb_merge_attention", ((uint)a.Rows, 1, 1), 128, 0, args);
    }

    public void MergeAttentionParts(Tensor parts, Tensor lses, int count, int heads, Tensor output)
    {
        var p = Bf16(parts, "merge parts"); var l = C(lses); var o = Bf16(output, "merge parts");
        long rows = o.Rows;
        if (count < 1 || p.Rows != count * rows || p.Cols != o.Cols || l.Rows != count * rows || l.Cols != heads || heads <= 0 || o.Cols % heads != 0)
            throw new ArgumentException($"merge of {count} parts: parts {p}, lses {l}, {heads} heads into {o}");
        if (rows == 0) return;
        Enter();
        ulong pp = p.Ptr, lp = l.Ptr, op = o.Ptr;
        int lseF32 = l.DType == CudaDType.F32 ? 1 : 0, d = o.Cols / heads;
        void** args = stackalloc void*[] { &pp, &lp, &lseF32, &op, &count, &rows, &heads, &d };
        Context.Launch(Context.Function(Elementwise, "apb_merge_parts"), "apb_merge_parts", ((uint)rows, 1, 1), 128, 0, args);
    }

    public int ActivationBytes => 2;

    public MemoryStats Memory
    {
        get
        {
            Enter();
            var (free, total) = Context.MemoryInfo();
            return new(Pool.BytesInUse, Pool.PeakBytes, total, free + Pool.BytesIdle);
        }
    }
    public void ResetPeakMemory() => Pool.ResetPeak();

    public void Synchronize()
    {
        Enter();
        Context.Synchronize();
    }

    public void Dispose()
    {
        if (_disposed) return;
        Context.MakeCurrent();
        Driver.cuStreamSynchronize(Context.Stream);
        _stepGraph?.Dispose();
        _gemm.Dispose();
        Pool.Dispose();
        if (_pinned != null) Driver.cuMemFreeHost(_pinned);
        _pinned = null;
        if (_ring != null) Driver.cuMemFreeHost(_ring);
        _ring = null;
        Context.Dispose();
        _disposed = true;
    }
}
