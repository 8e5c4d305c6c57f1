using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Apb.Backends.Cpu;

/// <summary>
/// out[T, N] = x[T, K] W[N, K]^T in fp32. Work is cut into tiles of TileT tokens x TileN output features so that one
/// tile's x rows and W rows stay in L2; a bf16/f16 W tile is widened once per tile into a thread-local buffer. The inner
/// kernel computes 2 tokens x 4 features at once (8 vector accumulators) so each loaded vector feeds several FMAs.
/// </summary>
static unsafe class CpuMatMul
{
    const int TileT = 64, TileN = 64;

    [ThreadStatic] static float[]? t_wbuf;

    public static void Run(CpuTensor x, CpuWeight w, CpuWeight? bias, CpuTensor output)
    {
        int T = x.Rows, K = x.Cols, N = w.Rows;
        int tilesT = (T + TileT - 1) / TileT, tilesN = (N + TileN - 1) / TileN;
        var xs = x.Data; int xo = x.Offset;
        var os = output.Data; int oo = output.Offset;
        Parallel.For(0, tilesT * tilesN, tile =>
        {
            int t0 = (tile % tilesT) * TileT, n0 = (tile / tilesT) * TileN;
            int tn = Math.Min(TileT, T - t0), nn = Math.Min(TileN, N - n0);
            float* wp = w.F32Rows(n0);
            float[]? buf = null;
            if (wp == null)
            {
                buf = t_wbuf is { } b && b.Length >= nn * K ? b : (t_wbuf = new float[TileN * K]);
                w.ReadRows(n0, buf.AsSpan(0, nn * K));
            }
            fixed (float* xb = &xs[xo], ob = &os[oo], wb = buf)
            {
                float* W = wp != null ? wp : wb;
                Tile(xb + (long)t0 * K, W, ob + (long)t0 * N + n0, tn, nn, K, N);
            }
        });
        if (bias != null)
        {
            var b = bias.Vector;
            for (int t = 0; t < T; t++)
                System.Numerics.Tensors.TensorPrimitives.Add(output.Row(t), b, output.Row(t));
        }
    }

    static void Tile(float* x, float* w, float* o, int tn, int nn, int K, int ldo)
    {
        int t = 0;
        for (; t + 2 <= tn; t += 2)
        {
            int n = 0;
            for (; n + 4 <= nn; n += 4) Kernel2x4(x + (long)t * K, w + (long)n * K, o + (long)t * ldo + n, K, ldo);
            for (; n < nn; n++)
            {
                o[(long)t * ldo + n] = Dot(x + (long)t * K, w + (long)n * K, K);
                o[(long)(t + 1) * ldo + n] = Dot(x + (long)(t + 1) * K, w + (long)n * K, K);
            }
        }
        for (; t < tn; t++)
            for (int n = 0; n < nn; n++)
                o[(long)t * ldo + n] = Dot(x + (long)t * K, w + (long)n * K, K);
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
