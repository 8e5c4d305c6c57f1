using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Apb.Backends.Cpu;

/// <summary>
/// out[T, N] = x[T, K] W[N, K]^T (+ bias) in fp32, two ways (docs/kernels/cpu-matmul.md has the arithmetic and timings).
/// <para>
/// Prefill (T &gt;= <see cref="PackedMinRows"/>): outer products, so that no output needs a horizontal (across-lane)
/// sum. W is widened to fp32 once per call, transposed to [k, feature] in micro-panels of 2 vectors of output
/// features. A task owns one panel (<see cref="PanelMicros"/> micro-panels) and a chunk of <see cref="ChunkRows"/>
/// tokens, and computes 6 tokens x 2 vectors of outputs at a time: per k, two panel loads and six broadcast x elements
/// feed 12 FMAs into 12 vector accumulators, stored once at the end.
/// </para>
/// <para>
/// Decode-sized calls (a few tokens): dot products over K, 2 tokens x 4 features at a time. Packing a panel there would
/// cost a second pass over W for a handful of rows; the dot form reads each W row once, as widened.
/// </para>
/// The vector width is a type parameter (<see cref="V512"/>, <see cref="V256"/>, <see cref="V128"/>, as in
/// <see cref="CpuAttention"/>); the widest the hardware accelerates is picked per call.
/// </summary>
static unsafe class CpuMatMul
{
    /// <summary>Tokens from which a call packs W panels (below: the dot-product form).</summary>
    public const int PackedMinRows = 8;

    /// <summary>Micro-tile rows: 6 tokens x 2 vectors = 12 accumulators, 2 panel loads and 1 broadcast live per k.</summary>
    const int MicroRows = 6;

    /// <summary>Micro-panels (2 vectors of features each) per task panel: 128 features at 16 lanes.</summary>
    const int PanelMicros = 4;

    /// <summary>Tokens per task: its x rows (0.75 MiB at K = 1024) and its panel (0.5 MiB) stay in a 2 MiB L2.</summary>
    const int ChunkRows = 192;

    /// <summary>Floats of packed panels at a time: 16 MiB.</summary>
    const int PackBudget = 4 << 20;

    /// <summary>A thread's bf16/f16 W rows widened to fp32 (Pack's panel before the transpose, DotForm's tile).</summary>
    [ThreadStatic] static float[]? t_widened;

    public static void Run(CpuTensor x, CpuWeight w, CpuWeight? bias, CpuTensor output) =>
        Run(x, w, bias, output, CpuAttention.WidestVector);

    /// <summary>Run with a chosen vector width (512, 256 or 128 bits) for prefill-sized calls; the tests cover each.</summary>
    internal static void Run(CpuTensor x, CpuWeight w, CpuWeight? bias, CpuTensor output, int vectorBits)
    {
        if (x.Rows >= PackedMinRows)
        {
            switch (vectorBits)
            {
                case 512: Packed<V512>(x, w, output); break;
                case 256: Packed<V256>(x, w, output); break;
                case 128: Packed<V128>(x, w, output); break;
                default: throw new ArgumentOutOfRangeException(nameof(vectorBits), vectorBits, "512, 256 or 128");
            }
        }
        else
            DotForm(x, w, output);
        if (bias != null)
        {
            var b = bias.Vector;
            for (int t = 0; t < x.Rows; t++)
                System.Numerics.Tensors.TensorPrimitives.Add(output.Row(t), b, output.Row(t));
        }
    }

    static void Packed<TV>(CpuTensor x, CpuWeight w, CpuTensor output) where TV : struct, IVec<TV>
    {
        int T = x.Rows, K = x.Cols, N = w.Rows, micro = 2 * TV.Count, panel = PanelMicros * micro;
        int panels = (N + panel - 1) / panel, chunks = (T + ChunkRows - 1) / ChunkRows;
        // Panels are packed once per call and shared by every token chunk: packing is scalar work over K x panel values,
        // which added a third or more when each chunk packed its own (v2 in docs/kernels/cpu-matmul.md). A group of
        // panels of at most PackBudget floats is packed, then used, so that a large W (a 14336 x 4096 projection) never
        // needs an fp32 copy of itself.
        int group = Math.Clamp(PackBudget / (panel * K), 1, panels);
        float[] packed = ArrayPool<float>.Shared.Rent(group * panel * K);
        var xs = x.Data; int xo = x.Offset;
        var os = output.Data; int oo = output.Offset;
        try
        {
            for (int g0 = 0; g0 < panels; g0 += group)
            {
                int first = g0, count = Math.Min(group, panels - g0);
                Parallel.For(0, count, i =>
                {
                    int n0 = (first + i) * panel;
                    fixed (float* wp = &packed[(long)i * panel * K]) Pack(w, n0, Math.Min(panel, N - n0), K, micro, wp);
                });
                Parallel.For(0, count * chunks, task =>
                {
                    int i = task / chunks, n0 = (first + i) * panel, t0 = (task % chunks) * ChunkRows;
                    int nn = Math.Min(panel, N - n0), tn = Math.Min(ChunkRows, T - t0);
                    float* tile = stackalloc float[MicroRows * micro];
                    fixed (float* xb = &xs[xo], ob = &os[oo], wp = &packed[(long)i * panel * K])
                    {
                        float* xt = xb + (long)t0 * K, ot = ob + (long)t0 * N + n0;
                        for (int m = 0; m * micro < nn; m++)
                        {
                            int cols = Math.Min(micro, nn - m * micro);
                            float* wm = wp + (long)m * K * micro;
                            for (int t = 0; t < tn; t += MicroRows)
                                Micro<TV>(xt + (long)t * K, K, Math.Min(MicroRows, tn - t), wm, K, ot + (long)t * N + m * micro, N, cols, tile);
                        }
                    }
                });
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(packed);
        }
    }

    /// <summary>
    /// W rows [n0, n0 + nn) widened to fp32 and transposed into micro-panels: wp[m][k][j] = W[n0 + m micro + j, k], zero
    /// past the last row (those lanes are computed and never stored).
    /// </summary>
    static void Pack(CpuWeight w, int n0, int nn, int K, int micro, float* wp)
    {
        float* rows = w.F32Rows(n0);
        float[]? widened = null;
        if (rows == null)
        {
            widened = Scratch(ref t_widened, nn * K);
            w.ReadRows(n0, widened.AsSpan(0, nn * K));
        }
        fixed (float* wb = widened)
        {
            float* src = rows != null ? rows : wb;
            for (int m = 0; m * micro < nn; m++)
            {
                float* dst = wp + (long)m * K * micro;
                int cols = Math.Min(micro, nn - m * micro);
                for (int j = 0; j < micro; j++)
                {
                    if (j >= cols)
                    {
                        for (int k = 0; k < K; k++) dst[(long)k * micro + j] = 0;
                        continue;
                    }
                    float* r = src + (long)(m * micro + j) * K;
                    for (int k = 0; k < K; k++) dst[(long)k * micro + j] = r[k];
                }
            }
        }
    }

    /// <summary>
    /// o[r, 0..cols) = sum over k of x[r, k] wm[k, 0..cols) for rows r &lt; rows (at most 6): 6 x 2 vector accumulators.
    /// Rows past <paramref name="rows"/> repeat row 0, so the loop has one shape. A partial tile (fewer rows or columns)
    /// is stored whole into <paramref name="tile"/> (6 x 2 vectors) and its valid part copied out: one straight run of
    /// stores after the loop. (Stores under per-row conditions made the JIT keep the accumulators on the stack across
    /// the loop, a third of the speed.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Micro<TV>(float* x, int ldx, int rows, float* wm, int K, float* o, int ldo, int cols, float* tile)
        where TV : struct, IVec<TV>
    {
        int W = TV.Count;
        float* x0 = x, x1 = rows > 1 ? x + ldx : x, x2 = rows > 2 ? x + 2 * ldx : x;
        float* x3 = rows > 3 ? x + 3 * ldx : x, x4 = rows > 4 ? x + 4 * ldx : x, x5 = rows > 5 ? x + 5 * ldx : x;
        TV c00 = TV.Zero, c01 = TV.Zero, c10 = TV.Zero, c11 = TV.Zero, c20 = TV.Zero, c21 = TV.Zero;
        TV c30 = TV.Zero, c31 = TV.Zero, c40 = TV.Zero, c41 = TV.Zero, c50 = TV.Zero, c51 = TV.Zero;
        float* b = wm;
        for (int k = 0; k < K; k++, b += 2 * W)
        {
            TV b0 = TV.Load(b), b1 = TV.Load(b + W), a;
            a = TV.Broadcast(x0[k]); c00 = TV.Fma(a, b0, c00); c01 = TV.Fma(a, b1, c01);
            a = TV.Broadcast(x1[k]); c10 = TV.Fma(a, b0, c10); c11 = TV.Fma(a, b1, c11);
            a = TV.Broadcast(x2[k]); c20 = TV.Fma(a, b0, c20); c21 = TV.Fma(a, b1, c21);
            a = TV.Broadcast(x3[k]); c30 = TV.Fma(a, b0, c30); c31 = TV.Fma(a, b1, c31);
            a = TV.Broadcast(x4[k]); c40 = TV.Fma(a, b0, c40); c41 = TV.Fma(a, b1, c41);
            a = TV.Broadcast(x5[k]); c50 = TV.Fma(a, b0, c50); c51 = TV.Fma(a, b1, c51);
        }
        bool whole = rows == MicroRows && cols == 2 * W;
        float* d = whole ? o : tile;
        int ld = whole ? ldo : 2 * W;
        TV.Store(c00, d); TV.Store(c01, d + W); d += ld;
        TV.Store(c10, d); TV.Store(c11, d + W); d += ld;
        TV.Store(c20, d); TV.Store(c21, d + W); d += ld;
        TV.Store(c30, d); TV.Store(c31, d + W); d += ld;
        TV.Store(c40, d); TV.Store(c41, d + W); d += ld;
        TV.Store(c50, d); TV.Store(c51, d + W);
        if (whole) return;
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++)
                o[(long)r * ldo + j] = tile[r * 2 * W + j];
    }

    static float[] Scratch(ref float[]? slot, int length) =>
        slot is { } b && b.Length >= length ? b : (slot = GC.AllocateUninitializedArray<float>(length, pinned: true));

    /// <summary>The dot-product form for a few tokens: tiles of up to 64 features, each W row widened once per tile.</summary>
    static void DotForm(CpuTensor x, CpuWeight w, CpuTensor output)
    {
        const int TileN = 64;
        int T = x.Rows, K = x.Cols, N = w.Rows, tiles = (N + TileN - 1) / TileN;
        var xs = x.Data; int xo = x.Offset;
        var os = output.Data; int oo = output.Offset;
        Parallel.For(0, tiles, tile =>
        {
            int n0 = tile * TileN, nn = Math.Min(TileN, N - n0);
            float* wp = w.F32Rows(n0);
            float[]? buf = null;
            if (wp == null)
            {
                buf = Scratch(ref t_widened, TileN * K);
                w.ReadRows(n0, buf.AsSpan(0, nn * K));
            }
            fixed (float* xb = &xs[xo], ob = &os[oo], wb = buf)
            {
                float* W = wp != null ? wp : wb;
                int t = 0;
                for (; t + 2 <= T; t += 2)
                {
                    int n = 0;
                    for (; n + 4 <= nn; n += 4) Kernel2x4(xb + (long)t * K, W + (long)n * K, ob + (long)t * N + n0 + n, K, N);
                    for (; n < nn; n++)
                    {
                        ob[(long)t * N + n0 + n] = Dot(xb + (long)t * K, W + (long)n * K, K);
                        ob[(long)(t + 1) * N + n0 + n] = Dot(xb + (long)(t + 1) * K, W + (long)n * K, K);
                    }
                }
                for (; t < T; t++)
                    for (int n = 0; n < nn; n++)
                        ob[(long)t * N + n0 + n] = Dot(xb + (long)t * K, W + (long)n * K, K);
            }
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Dot(float* a, float* b, int K) =>
        System.Numerics.Tensors.TensorPrimitives.Dot(new ReadOnlySpan<float>(a, K), new ReadOnlySpan<float>(b, K));

    static void Kernel2x4(float* x0, float* w0, float* o, int K, int ldo)
    {
        float* x1 = x0 + K;
        float* w1 = w0 + K, w2 = w0 + 2 * K, w3 = w0 + 3 * K;
        var a00 = Vector256<float>.Zero; var a01 = a00; var a02 = a00; var a03 = a00;
        var a10 = a00; var a11 = a00; var a12 = a00; var a13 = a00;
        int k = 0;
        for (; k + 8 <= K; k += 8)
        {
            var u = Vector256.Load(x0 + k); var v = Vector256.Load(x1 + k);
            var b0 = Vector256.Load(w0 + k); var b1 = Vector256.Load(w1 + k);
            var b2 = Vector256.Load(w2 + k); var b3 = Vector256.Load(w3 + k);
            a00 = Vector256.FusedMultiplyAdd(u, b0, a00); a01 = Vector256.FusedMultiplyAdd(u, b1, a01);
            a02 = Vector256.FusedMultiplyAdd(u, b2, a02); a03 = Vector256.FusedMultiplyAdd(u, b3, a03);
            a10 = Vector256.FusedMultiplyAdd(v, b0, a10); a11 = Vector256.FusedMultiplyAdd(v, b1, a11);
            a12 = Vector256.FusedMultiplyAdd(v, b2, a12); a13 = Vector256.FusedMultiplyAdd(v, b3, a13);
        }
        float r00 = Vector256.Sum(a00), r01 = Vector256.Sum(a01), r02 = Vector256.Sum(a02), r03 = Vector256.Sum(a03);
        float r10 = Vector256.Sum(a10), r11 = Vector256.Sum(a11), r12 = Vector256.Sum(a12), r13 = Vector256.Sum(a13);
        for (; k < K; k++)
        {
            float u = x0[k], v = x1[k];
            r00 += u * w0[k]; r01 += u * w1[k]; r02 += u * w2[k]; r03 += u * w3[k];
            r10 += v * w0[k]; r11 += v * w1[k]; r12 += v * w2[k]; r13 += v * w3[k];
        }
        o[0] = r00; o[1] = r01; o[2] = r02; o[3] = r03;
        o[ldo] = r10; o[ldo + 1] = r11; o[ldo + 2] = r12; o[ldo + 3] = r13;
    }
}
