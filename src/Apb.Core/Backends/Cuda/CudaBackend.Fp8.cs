namespace Apb.Backends.Cuda;

/// <summary>
/// The device's KV cache of <see cref="KvCacheDType.Fp8"/> (docs/notes/kv-fp8-plan.md). A cache row of cols values is
/// one byte row of <see cref="Fp8RowBytes"/> in a <see cref="CudaDType.U8"/> tensor: cols E4M3 codes, then cols / 32
/// fp32 scales, then padding to 16 bytes (value = decode(code) x scale; codec and rounding as <see cref="Fp8E4M3"/>).
/// A head_dim-128 row of one KV head takes 128 + 16 bytes against 256 in bf16. Kernels: apb_rope_append_fp8, apb_fp8_quantize and
/// apb_fp8_dequantize (elementwise.cu), apb_decode2_split_*_fp8 (decode.cu) and apb_decode3_split_*_fp8 (decode_mma.cu); their e4m3 conversions need sm_89 or
/// later, and elsewhere <see cref="AllocateKv"/> refuses fp8.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    /// <summary>Whether this device has the fp8 conversions of the fp8 KV cache's kernels (compute capability 8.9 or later).</summary>
    public bool Fp8KvAvailable => Context.Device.Major * 10 + Context.Device.Minor >= 89;

    /// <summary>Bytes of an fp8 cache row (<see cref="KvCacheDTypes.Fp8RowBytes"/>).</summary>
    public static int Fp8RowBytes(int cols) => KvCacheDTypes.Fp8RowBytes(cols);

    /// <summary>The bytes of a row that hold something (<see cref="KvCacheDTypes.Fp8UsedBytes"/>).</summary>
    public static int Fp8UsedBytes(int cols) => KvCacheDTypes.Fp8UsedBytes(cols);

    public Tensor AllocateKv(int rows, int cols, KvCacheDType dtype)
    {
        if (dtype == KvCacheDType.Auto) return Allocate(rows, cols);
        CheckFp8Cols(cols, "fp8 KV cache");
        if (!Fp8KvAvailable)
            throw new ApbException($"the fp8 KV cache needs a GPU of compute capability 8.9 or later (Ada, Hopper, Blackwell); this one is " +
                                   $"{Context.Device.ComputeCapability}: use --kv-cache-dtype auto");
        return Allocate(rows, Fp8RowBytes(cols), CudaDType.U8);
    }

    public long KvBytes(long rows, int cols, KvCacheDType dtype) => rows * KvCacheDTypes.DeviceRowBytes(cols, dtype);

    public void RopeAppendKv(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, ReadOnlySpan<int> positions, RopeTable table,
                             Tensor kDst, Tensor vDst, KvCacheDType dtype)
    {
        if (dtype == KvCacheDType.Auto) { RopeAppend(q, k, v, heads, kvHeads, positions, table, kDst, vDst); return; }
        const string op = "rope_append_fp8";
        var qs = Bf16(q, op); var ks = Bf16(k, op); var vs = Bf16(v, op);
        int d = table.HeadDim;
        if (d is not (64 or 128))
        {
            // The fused kernel reduces a group of 32 values within a warp, which needs d / 2 to be whole warps: other
            // head dims rotate into bf16 rows first and quantize them as AppendKv does.
            using var kb = Allocate(k.Rows, k.Cols, CudaDType.BF16);
            using var vb = Allocate(v.Rows, v.Cols, CudaDType.BF16);
            RopeAppend(q, k, v, heads, kvHeads, positions, table, kb, vb);
            AppendKv(kb, 0, kDst, 0, k.Rows, dtype);
            AppendKv(vb, 0, vDst, 0, v.Rows, dtype);
            return;
        }
        if (qs.Cols != heads * d || ks.Cols != kvHeads * d || positions.Length != qs.Rows || ks.Rows != qs.Rows)
            throw new ArgumentException($"{op} on q {qs} ({heads} heads) and k {ks} ({kvHeads} heads) of {d} with {positions.Length} positions");
        Same(ks, vs, op);
        var kd = Fp8Rows(kDst, ks.Rows, ks.Cols, op); var vd = Fp8Rows(vDst, ks.Rows, ks.Cols, op);
        if (qs.Rows == 0) return;
        Enter();
        var (pos, inv) = RopeArgs(positions, table);
        ulong qp = qs.Ptr, kp = ks.Ptr, vp = vs.Ptr, kdp = kd.Ptr, vdp = vd.Ptr;
        long rowBytes = kd.Cols;
        float scale = table.AttentionScaling;
        void** args = stackalloc void*[] { &qp, &kp, &vp, &kdp, &vdp, &rowBytes, &pos, &inv, &heads, &kvHeads, &d, &scale };
        // One block per (token, head), a thread per rotated pair (d / 2: whole warps).
        Context.Launch(Context.Function(Elementwise, "apb_rope_append_fp8"), "apb_rope_append_fp8",
                       ((uint)qs.Rows, (uint)(heads + kvHeads), 1), (uint)(d / 2), 0, args);
    }

    public void AppendKv(Tensor src, int srcRow, Tensor dst, int dstRow, int rows, KvCacheDType dtype)
    {
        if (dtype == KvCacheDType.Auto) { Copy(src, srcRow, 0, dst, dstRow, 0, rows, src.Cols); return; }
        const string op = "fp8_quantize";
        var s = Bf16(src, op);
        if (srcRow < 0 || rows < 0 || srcRow + rows > s.Rows) throw new ArgumentException($"{op}: rows [{srcRow}, {srcRow + rows}) of {s}");
        var d = Fp8Rows(C(dst).RowSlice(dstRow, rows), rows, s.Cols, op);
        if (rows == 0) return;
        Enter();
        ulong sp = s.Ptr + (ulong)((long)srcRow * s.Cols * 2), dp = d.Ptr;
        long srcStride = s.Cols, rowBytes = d.Cols;
        int cols = s.Cols;
        const int warps = 4;   // a warp per group of 32 values
        void** args = stackalloc void*[] { &sp, &srcStride, &dp, &rowBytes, &cols };
        Context.Launch(Context.Function(Elementwise, "apb_fp8_quantize"), "apb_fp8_quantize",
                       ((uint)((cols / KvCacheDTypes.Fp8Group + warps - 1) / warps), (uint)rows, 1), 32 * warps, 0, args);
    }

    ulong _kvReadK, _kvReadV;           // ReadKv's bf16 scratch for keys and for values
    long _kvReadKBytes, _kvReadVBytes;

    public Tensor ReadKv(Tensor rows, int cols, KvCacheDType dtype, bool values)
    {
        if (dtype == KvCacheDType.Auto) return rows;
        const string op = "fp8_dequantize";
        var r = Fp8Rows(rows, rows.Rows, cols, op);
        long bytes = (long)r.Rows * cols * 2;
        ulong dst = values
            ? Scratch(ref _kvReadV, ref _kvReadVBytes, bytes, 1L << 20, "fp8 KV cache values in bf16")
            : Scratch(ref _kvReadK, ref _kvReadKBytes, bytes, 1L << 20, "fp8 KV cache keys in bf16");
        var o = new CudaTensor(this, dst, r.Rows, cols, CudaDType.BF16, owns: false);
        if (r.Rows == 0) return o;
        Enter();
        ulong sp = r.Ptr, dp = dst;
        long rowBytes = r.Cols, dstStride = cols;
        void** args = stackalloc void*[] { &sp, &rowBytes, &dp, &dstStride, &cols };
        const int threads = 128;   // 8 values each
        Context.Launch(Context.Function(Elementwise, "apb_fp8_dequantize"), "apb_fp8_dequantize",
                       ((uint)((cols / 8 + threads - 1) / threads), (uint)r.Rows, 1), threads, 0, args);
        return o;
    }

    public void ScatterRowsKv(Tensor src, IReadOnlyList<Tensor> destinations, KvCacheDType dtype)
    {
        if (dtype == KvCacheDType.Auto) { ScatterRows(src, destinations); return; }
        const string op = "fp8_scatter_quantize";
        var s = Bf16(src, op);
        int n = destinations.Count, cols = s.Cols;
        if (n != s.Rows) throw new ArgumentException($"{op}: {s.Rows} rows into {n} destinations");
        if (n == 0) return;
        Enter();
        Span<ulong> table = n <= 1024 ? stackalloc ulong[n] : new ulong[n];
        for (int i = 0; i < n; i++) table[i] = Fp8Rows(destinations[i], 1, cols, op).Ptr;
        ulong tp = Scratch(ref _scatterTable, ref _scatterTableBytes, n * 8L, 4096, "scatter table");
        fixed (ulong* t = table) UploadSmall(tp, t, n * 8L, "scatter table");
        ulong sp = s.Ptr;
        const int warps = 4;
        void** args = stackalloc void*[] { &sp, &tp, &cols };
        Context.Launch(Context.Function(Elementwise, "apb_fp8_scatter_quantize"), "apb_fp8_scatter_quantize",
                       ((uint)((cols / KvCacheDTypes.Fp8Group + warps - 1) / warps), (uint)n, 1), 32 * warps, 0, args);
    }

    /// <summary>
    /// A batched decode step against the sequences' own fp8 caches in one launch (the batch kernel of version 3, or 2
    /// under APB_DECODE_KERNEL=2/2pf, reading fp8 rows), where it applies: head dim 64 or 128, a GQA group of at most 16
    /// (8 under version 2). Otherwise the sequences one by one.
    /// </summary>
    public void DecodeAttentionKv(Tensor q, IReadOnlyList<Tensor> keys, IReadOnlyList<Tensor> values, int heads, int kvHeads, Tensor output,
                                  KvCacheDType dtype)
    {
        if (dtype == KvCacheDType.Auto) { DecodeAttention(q, keys, values, heads, kvHeads, output); return; }
        const string op = "decode attention (fp8 cache)";
        var (qs, o, b, d) = BatchDecodeCall(q, keys, values, heads, kvHeads, output, op);
        if (b == 0) return;
        int cols = kvHeads * d;
        var ks = new CudaTensor[b]; var vs = new CudaTensor[b];
        int maxLen = 0;
        for (int i = 0; i < b; i++)
        {
            ks[i] = Fp8Rows(keys[i], keys[i].Rows, cols, op); vs[i] = Fp8Rows(values[i], keys[i].Rows, cols, op);
            if (ks[i].Rows < 1) throw new ArgumentException($"{op}: sequence {i} has no cached row");
            maxLen = Math.Max(maxLen, ks[i].Rows);
        }
        var fast = FastDecode(batch: true, fp8: true, heads / kvHeads, d);
        if (fast is null || qs.Ptr % 16 != 0 || qs.Cols % 8 != 0)   // null under version 1 too
        {
            IBackend.DecodeKvOneByOne(this, qs, ks, vs, heads, kvHeads, o, dtype);
            return;
        }
        BatchDecode(fast.Value, qs, ks, vs, maxLen, ks[0].Cols, heads, kvHeads, o);
    }

    /// <summary>
    /// The split-KV decode (version 3, or 2) straight from fp8 cache rows where it takes the call: at most 16 (query row,
    /// head) pairs per KV head (8 under version 2), head dim 64 or 128, causal or no mask. Otherwise false: the caller
    /// reads the rows into bf16.
    /// </summary>
    public bool TryAttentionKv(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, AttentionMask mask, Tensor output, Tensor? lse, KvCacheDType dtype)
    {
        if (dtype == KvCacheDType.Auto || mask is not (AttentionMask.Causal or AttentionMask.None) || heads <= 0 || kvHeads <= 0 ||
            heads % kvHeads != 0 || q.Cols % heads != 0)
            return false;
        int d = q.Cols / heads, pairs = q.Rows * (heads / kvHeads);
        if (FastDecode(batch: false, fp8: true, pairs, d) is null || q.Rows > DecodeMaxQueryRows) return false;   // none under version 1 either
        // The kernel reads a lane's 8 query values as one 16-byte load, as the bf16 decode does (Attention checks the same).
        if (C(q).Ptr % 16 != 0 || q.Cols % 8 != 0) return false;
        DecodeAttentionFp8(q, k, v, heads, kvHeads, mask, output, lse);
        return true;
    }

    /// <summary>
    /// Attention of a few query rows (at most 16 (query row, head) pairs per KV head, 8 under version 2; head dim 64 or
    /// 128) against fp8 cache rows, as <see cref="Attention"/> computes it against the values the codes stand for: split
    /// over the keys like the bf16 decode (version 3 by default, one wave of blocks), merged by LSE.
    /// </summary>
    public void DecodeAttentionFp8(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, AttentionMask mask, Tensor output, Tensor? lse)
    {
        const string op = "decode_attention_fp8";
        var qs = Bf16(q, op); var o = Bf16(output, op);
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0 || qs.Cols % heads != 0 || o.Rows != qs.Rows || o.Cols != qs.Cols ||
            (lse != null && (lse.Rows != qs.Rows || lse.Cols != heads)))
            throw new ArgumentException($"{op}: q {qs} ({heads} heads), out {o}, lse {lse}");
        int tq = qs.Rows, tk = k.Rows, d = qs.Cols / heads, pairs = tq * (heads / kvHeads);
        var ks = Fp8Rows(k, tk, kvHeads * d, op); var vs = Fp8Rows(v, tk, kvHeads * d, op);
        if (mask is not (AttentionMask.Causal or AttentionMask.None)) throw new ArgumentException($"{op}: mask {mask}; the fp8 decode takes causal or none");
        if (tq == 0) return;
        var fast = FastDecode(batch: false, fp8: true, pairs, d);
        if (fast is null || tq > DecodeMaxQueryRows)
            throw new ArgumentException($"{op}: {tq} rows, {pairs} (query row, head) pairs per KV head at head dim {d}; the fp8 decode kernel takes at most {FastDecodeMaxPairs} pairs (decode kernel {DecodeKernel}) and head dims 64 or 128");
        Enter();
        // At most 16 pairs: one row block.
        SplitDecode(fast.Value, qs, ks.Ptr, vs.Ptr, tk, ks.Cols, 1, heads, kvHeads, mask, o,
                    lse is null ? null : C(lse));
    }

    static void CheckFp8Cols(int cols, string op)
    {
        if (cols % KvCacheDTypes.Fp8Group != 0)
            throw new ArgumentException($"{op}: a row of {cols} values; an fp8 row takes a multiple of {KvCacheDTypes.Fp8Group} (a scale per {KvCacheDTypes.Fp8Group})");
    }

    /// <summary><paramref name="t"/> as fp8 cache rows of <paramref name="cols"/> values: U8, [rows, Fp8RowBytes(cols)].</summary>
    static CudaTensor Fp8Rows(Tensor t, int rows, int cols, string op)
    {
        CheckFp8Cols(cols, op);
        var c = C(t);
        if (c.DType != CudaDType.U8 || c.Rows != rows || c.Cols != Fp8RowBytes(cols))
            throw new ArgumentException($"{op}: {c} is not {rows} fp8 cache rows of {cols} values (U8 [{rows}, {Fp8RowBytes(cols)}])");
        return c;
    }

    /// <summary>
    /// Host values [rows, cols] as fp8 cache rows in this layout (the host codec's codes, then the scales), and the
    /// values the rows stand for (decode(code) x scale): what tests and benches upload and compare against.
    /// </summary>
    public static byte[] EncodeFp8Rows(float[] x, int cols, float[]? values)
    {
        CheckFp8Cols(cols, "encode fp8 rows");
        int rows = x.Length / cols, rowBytes = Fp8RowBytes(cols), groups = cols / KvCacheDTypes.Fp8Group;
        var bytes = new byte[(long)rows * rowBytes];
        // Rows are independent: a test's 64K-row cache is 67M values through the host codec.
        Parallel.For(0, rows, r =>
        {
            var row = bytes.AsSpan(r * rowBytes, rowBytes);
            var scales = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(row[cols..Fp8UsedBytes(cols)]);
            for (int g = 0; g < groups; g++)
            {
                int at = r * cols + g * KvCacheDTypes.Fp8Group;
                var group = x.AsSpan(at, KvCacheDTypes.Fp8Group);
                float sc = scales[g] = Fp8E4M3.RowScale(group);
                for (int i = 0; i < group.Length; i++)
                {
                    byte code = row[g * KvCacheDTypes.Fp8Group + i] = Fp8E4M3.Encode(group[i] / sc);
                    if (values != null) values[at + i] = Fp8E4M3.Decode(code) * sc;
                }
            }
        });
        return bytes;
    }

    /// <summary>Bytes into a byte tensor (fp8 cache rows), for tests and tools.</summary>
    public void UploadBytes(ReadOnlySpan<byte> src, Tensor dst)
    {
        var d = C(dst);
        if (d.DType != CudaDType.U8 || src.Length != (long)d.Rows * d.Cols) throw new ArgumentException($"upload of {src.Length} bytes into {d}");
        Enter();
        fixed (byte* p = src) CopyToDevice(d.Ptr, p, src.Length, "cuMemcpyHtoDAsync(upload bytes)");
        Context.Synchronize();
    }

    /// <summary>A byte tensor's bytes (fp8 cache rows), for tests and tools.</summary>
    public void DownloadBytes(Tensor src, Span<byte> dst)
    {
        var s = C(src);
        if (s.DType != CudaDType.U8 || dst.Length < (long)s.Rows * s.Cols) throw new ArgumentException($"download of {s} into {dst.Length} bytes");
        Enter();
        fixed (byte* p = dst) CopyToHost(p, s.Ptr, (long)s.Rows * s.Cols, "cuMemcpyDtoHAsync(download bytes)");
        Context.Synchronize();
    }
}
