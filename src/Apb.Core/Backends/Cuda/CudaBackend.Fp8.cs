namespace Apb.Backends.Cuda;

/// <summary>
/// Rows of an FP8 KV cache (--kv-cache-dtype fp8; docs/notes/kv-fp8-plan.md): E4M3 codes [rows, kv_dim], one byte
/// each, and an fp32 scale per 32 values [rows, kv_dim / 32]. Value = decode(code) x scale; the codec and its rounding
/// are <see cref="Fp8E4M3"/>'s. A head_dim-128 row of one KV head takes 128 + 16 bytes against 256 in bf16.
/// </summary>
public readonly record struct Fp8Rows(CudaTensor Codes, CudaTensor Scales)
{
    public const int Group = 32;   // APB_FP8_GROUP in fp8.cuh
    public int Rows => Codes.Rows;
    public Fp8Rows RowSlice(int start, int count) =>
        new((CudaTensor)Codes.RowSlice(start, count), (CudaTensor)Scales.RowSlice(start, count));
}

/// <summary>
/// Host side of the fp8 KV cache's kernels: the append that rotates and quantizes (elementwise.cu's
/// apb_rope_append_fp8) and version 2 of the split-KV decode reading fp8 rows (decode.cu's apb_decode2_split_*_fp8).
/// The fp8 kernels convert with PTX's cvt to and from e4m3x2, which needs sm_89 or later.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    /// <summary>Whether this device has the fp8 conversions the fp8 KV cache's kernels use (compute capability 8.9 or later).</summary>
    public bool Fp8KvAvailable => Context.Device.Major * 10 + Context.Device.Minor >= 89;

    void RequireFp8(string op)
    {
        if (!Fp8KvAvailable)
            throw new ApbException($"{op}: the fp8 KV cache needs a GPU of compute capability 8.9 or later (Ada, Hopper); " +
                                   $"this one is {Context.Device.ComputeCapability}: use the bf16 cache");
    }

    /// <summary>Room for <paramref name="rows"/> fp8 rows of <paramref name="cols"/> values (a multiple of 32).</summary>
    public Fp8Rows AllocateFp8(int rows, int cols)
    {
        if (cols % Fp8Rows.Group != 0) throw new ArgumentException($"an fp8 row of {cols} values: it must be a multiple of {Fp8Rows.Group} (a scale per {Fp8Rows.Group})");
        return new(Allocate(rows, cols, CudaDType.U8), Allocate(rows, cols / Fp8Rows.Group, CudaDType.F32));
    }

    /// <summary>
    /// <see cref="RopeAppend"/> into an fp8 cache: q and k rotated in place (bf16), then each rotated key row and each
    /// value row quantized into <paramref name="kDst"/> and <paramref name="vDst"/> (codes and scales). Head dims 64
    /// and 128 (the kernel reduces a group of 32 values within a warp).
    /// </summary>
    public void RopeAppendFp8(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, ReadOnlySpan<int> positions, RopeTable table,
                              Fp8Rows kDst, Fp8Rows vDst)
    {
        const string op = "rope_append_fp8";
        var qs = Bf16(q, op); var ks = Bf16(k, op); var vs = Bf16(v, op);
        int d = table.HeadDim;
        if (d is not (64 or 128)) throw new ArgumentException($"{op}: head dim {d}; the fp8 cache takes 64 or 128");
        if (qs.Cols != heads * d || ks.Cols != kvHeads * d || positions.Length != qs.Rows || ks.Rows != qs.Rows)
            throw new ArgumentException($"{op} on q {qs} ({heads} heads) and k {ks} ({kvHeads} heads) of {d} with {positions.Length} positions");
        Same(ks, vs, op);
        CheckFp8Rows(kDst, ks.Rows, ks.Cols, op); CheckFp8Rows(vDst, ks.Rows, ks.Cols, op);
        if (qs.Rows == 0) return;
        RequireFp8(op);
        Enter();
        var (pos, inv) = RopeArgs(positions, table);
        ulong qp = qs.Ptr, kp = ks.Ptr, vp = vs.Ptr, kdp = kDst.Codes.Ptr, vdp = vDst.Codes.Ptr, ksp = kDst.Scales.Ptr, vsp = vDst.Scales.Ptr;
        float scale = table.AttentionScaling;
        void** args = stackalloc void*[] { &qp, &kp, &vp, &kdp, &vdp, &ksp, &vsp, &pos, &inv, &heads, &kvHeads, &d, &scale };
        // One block per (token, head), a thread per rotated pair (d / 2: whole warps).
        Context.Launch(Context.Function(Elementwise, "apb_rope_append_fp8"), "apb_rope_append_fp8",
                       ((uint)qs.Rows, (uint)(heads + kvHeads), 1), (uint)(d / 2), 0, args);
    }

    static void CheckFp8Rows(Fp8Rows r, int rows, int cols, string op)
    {
        if (r.Codes.DType != CudaDType.U8 || r.Scales.DType != CudaDType.F32 || r.Codes.Rows != rows || r.Codes.Cols != cols ||
            r.Scales.Rows != rows || r.Scales.Cols != cols / Fp8Rows.Group)
            throw new ArgumentException($"{op}: fp8 rows {r.Codes} + {r.Scales} for [{rows}, {cols}] values (codes U8 [{rows}, {cols}], scales F32 [{rows}, {cols / Fp8Rows.Group}])");
    }

    /// <summary>
    /// Attention of a few query rows (a decode step: at most 8 (query row, head) pairs per KV head, head dim 64 or 128)
    /// against an fp8 cache, as <see cref="Attention"/> computes it against the bf16 values the codes stand for. Split
    /// over the keys like the bf16 decode (version 2, one wave of blocks), merged by LSE.
    /// </summary>
    public void DecodeAttentionFp8(Tensor q, Fp8Rows k, Fp8Rows v, int heads, int kvHeads, AttentionMask mask, Tensor output, Tensor? lse)
    {
        const string op = "decode_attention_fp8";
        var qs = Bf16(q, op); var o = Bf16(output, op);
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0 || qs.Cols % heads != 0 || o.Rows != qs.Rows || o.Cols != qs.Cols ||
            (lse != null && (lse.Rows != qs.Rows || lse.Cols != heads)))
            throw new ArgumentException($"{op}: q {qs} ({heads} heads), out {o}, lse {lse}");
        int tq = qs.Rows, tk = k.Rows, d = qs.Cols / heads, pairs = tq * (heads / kvHeads);
        CheckFp8Rows(k, tk, kvHeads * d, op); CheckFp8Rows(v, tk, kvHeads * d, op);
        if (mask is not (AttentionMask.Causal or AttentionMask.None)) throw new ArgumentException($"{op}: mask {mask}; the fp8 decode takes causal or none");
        string? stem = Decode2(pairs, d);
        if (stem is null || DecodeKernel == DecodeKernelVersion.V1)
            throw new ArgumentException($"{op}: {pairs} (query row, head) pairs per KV head at head dim {d}; the fp8 decode kernel takes at most {Decode2MaxPairs} and head dims 64 or 128");
        if (tq == 0) return;
        RequireFp8(op);
        Enter();
        string fn = "apb_decode2_split_" + stem + "_fp8";
        nint f = Context.Function(DecodeFile, fn);
        var launch = new DecodeLaunch(fn, f, Decode2Threads, 0, Decode2Step(d), BlocksPerSm(f, Decode2Threads, 0), CountsKeys: true);
        var (splits, perSplit) = DecodeSplits(tk, kvHeads, launch);
        long rowsOut = (long)tq * heads;
        var (partO, partLse) = DecodePartials(rowsOut, splits, d);
        ulong qp = qs.Ptr, kp = k.Codes.Ptr, vp = v.Codes.Ptr, ksp = k.Scales.Ptr, vsp = v.Scales.Ptr;
        long qStride = qs.Cols, kStride = k.Codes.Cols;
        float scale = 1f / MathF.Sqrt(d);
        int causal = mask == AttentionMask.Causal ? 1 : 0;
        void** sa = stackalloc void*[] { &qp, &kp, &vp, &ksp, &vsp, &partO, &partLse, &tq, &tk, &heads, &kvHeads, &qStride, &kStride, &scale, &causal, &perSplit };
        Context.Launch(f, fn, ((uint)splits, (uint)kvHeads, 1), Decode2Threads, 0, sa);
        DecodeMerge(partO, partLse, o, lse is null ? null : C(lse), rowsOut, heads, d, splits);
    }

    /// <summary>Bytes into a byte tensor (fp8 codes), for tests and tools.</summary>
    public void UploadBytes(ReadOnlySpan<byte> src, CudaTensor dst)
    {
        if (dst.DType != CudaDType.U8 || src.Length != (long)dst.Rows * dst.Cols) throw new ArgumentException($"upload of {src.Length} bytes into {dst}");
        Enter();
        fixed (byte* p = src) CopyToDevice(dst.Ptr, p, src.Length, "cuMemcpyHtoDAsync(upload bytes)");
        Context.Synchronize();
    }

    /// <summary>A byte tensor's bytes (fp8 codes), for tests and tools.</summary>
    public void DownloadBytes(CudaTensor src, Span<byte> dst)
    {
        if (src.DType != CudaDType.U8 || dst.Length < (long)src.Rows * src.Cols) throw new ArgumentException($"download of {src} into {dst.Length} bytes");
        Enter();
        fixed (byte* p = dst) CopyToHost(p, src.Ptr, (long)src.Rows * src.Cols, "cuMemcpyDtoHAsync(download bytes)");
        Context.Synchronize();
    }
}
