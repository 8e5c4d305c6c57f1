using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Apb.Backends.Cpu;

/// <summary>
/// Exact attention in fp32, the reference the GPU kernels are checked against, written as a blocked flash-attention loop.
/// <para>
/// One task owns one KV head and a block of query positions together with all the query heads that share that KV head
/// (GQA), so every K and V row it loads serves <c>group x positions</c> query rows. The task walks the visible keys in
/// blocks of <see cref="KeyBlock"/>, keeping for each query row the running max <c>m</c>, the running sum <c>l</c> of
/// exp(score - m) and the unnormalised output <c>o</c> (online softmax): when a block raises a row's max, the row's
/// <c>l</c> and <c>o</c> are rescaled by exp(old max - new max). At the end o / l is the softmax-weighted sum of values
/// and m + log(l) the log-sum-exp. Keys past the last row's causal limit are never touched.
/// </para>
/// <para>
/// Layout, chosen so that no inner loop needs a horizontal (across-lane) reduction: vector lanes run along query rows.
/// The task transposes its queries once into <c>qt[c, row]</c>; a score block is then <c>st[key, row]</c> =
/// sum over c of k[key, c] x qt[c, row] (broadcast one K element, FMA with a vector of query rows), and the softmax max
/// and sum over keys are plain lane-wise max and add down the columns of <c>st</c>. For the value sum the lanes run
/// along the head dimension instead: o[row, :] += p[key, row] x v[key, :], one V row load serving four query rows.
/// </para>
/// The vector width is a type parameter (<see cref="V512"/>, <see cref="V256"/>, <see cref="V128"/>): the widest one the
/// hardware accelerates is picked per call, and the JIT compiles the kernels separately for each.
/// </summary>
static unsafe class CpuAttention
{
    /// <summary>Keys per block: a block's scores (KeyBlock x rows) stay in L1 between the score, softmax and value passes.</summary>
    const int KeyBlock = 64;

    /// <summary>Query rows (positions x heads of the group) a task aims for: enough to amortise each K/V block load.</summary>
    const int TargetRows = 64;

    [ThreadStatic] static float[]? t_scratch;

    /// <summary>The widest vector (in bits) this machine accelerates: what <see cref="Run"/> uses.</summary>
    public static int WidestVector => Vector512.IsHardwareAccelerated ? 512 : Vector256.IsHardwareAccelerated ? 256 : 128;

    public static void Run(CpuTensor q, CpuTensor k, CpuTensor v, int heads, int kvHeads, AttentionMask mask,
        CpuTensor output, CpuTensor? lse) =>
        Run(q, k, v, heads, kvHeads, mask, output, lse, WidestVector);

    /// <summary>
    /// Run with a chosen vector width (512, 256 or 128 bits; the tests use it to cover the narrower paths) and a sliding
    /// window (0: none; see <see cref="IBackend.Attention"/>).
    /// </summary>
    internal static void Run(CpuTensor q, CpuTensor k, CpuTensor v, int heads, int kvHeads, AttentionMask mask,
        CpuTensor output, CpuTensor? lse, int vectorBits, int window = 0)
    {
        switch (vectorBits)
        {
            case 512: Run<V512>(q, k, v, heads, kvHeads, mask, output, lse, window); break;
            case 256: Run<V256>(q, k, v, heads, kvHeads, mask, output, lse, window); break;
            case 128: Run<V128>(q, k, v, heads, kvHeads, mask, output, lse, window); break;
            default: throw new ArgumentOutOfRangeException(nameof(vectorBits), vectorBits, "512, 256 or 128");
        }
    }

    /// <summary>Shapes and tensors of one call, shared by its tasks.</summary>
    sealed class Problem(CpuTensor q, CpuTensor k, CpuTensor v, int heads, int kvHeads, AttentionMask mask,
        CpuTensor output, CpuTensor? lse, int positionsPerTask, int window)
    {
        public readonly CpuTensor Q = q, K = k, V = v, Output = output;
        public readonly CpuTensor? Lse = lse;
        public readonly int Tq = q.Rows, Tk = k.Rows, D = q.Cols / heads, Group = heads / kvHeads;
        public readonly bool Causal = mask == AttentionMask.Causal;
        public readonly int Positions = positionsPerTask;
        public readonly float Scale = 1.0f / MathF.Sqrt(q.Cols / heads);

        /// <summary>Keys [0, Limit(i)) are visible to query row i (causal: bottom-right aligned, so row i sees i + Tk - Tq).</summary>
        public int Limit(int i) => Causal ? Math.Clamp(i + Tk - Tq + 1, 0, Tk) : Tk;

        /// <summary>The first key row i sees: 0, or with a sliding window the first of the window keys ending at Limit(i).</summary>
        public int Start(int i) => window > 0 ? Math.Max(Limit(i) - window, 0) : 0;
    }

    static void Run<TV>(CpuTensor q, CpuTensor k, CpuTensor v, int heads, int kvHeads, AttentionMask mask,
        CpuTensor output, CpuTensor? lse, int window) where TV : struct, IVec<TV>
    {
        if (q.Rows == 0) return;
        // Positions per task: TargetRows query rows counting the group's heads, fewer when there are fewer queries (a
        // decode step is one position: its task is then one vector of rows, not 64).
        int positions = Math.Min(Math.Max(1, TargetRows / (heads / kvHeads)), q.Rows);
        var p = new Problem(q, k, v, heads, kvHeads, mask, output, lse, positions, window);
        int blocks = (p.Tq + positions - 1) / positions;
        Parallel.For(0, kvHeads * blocks, task =>
        {
            // Under a causal mask late query blocks see the most keys: hand them out first, so that the tasks left
            // for the end of the loop are the short ones and both cores finish together.
            int block = blocks - 1 - task / kvHeads, kh = task % kvHeads;
            QueryBlock<TV>(p, kh, block * positions);
        });
    }

    /// <summary>Attention for KV head <paramref name="kh"/>'s query heads at positions [i0, i0 + p.Positions).</summary>
    /// <remarks>
    /// AggressiveOptimization here and on the kernels: compiled fully optimised at the first call. At tier 0 the vector
    /// wrappers are not inlined, and short calls (a decode step) would run many times before tiering up
    /// (docs/kernels/cpu-attention.md).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void QueryBlock<TV>(Problem p, int kh, int i0) where TV : struct, IVec<TV>
    {
        // Row r = (i - i0) x group + g is query head kh x group + g at position i; R rounds the rows up to whole vectors
        // (the padding rows compute garbage that is never read). The value pass, 4 rows at a time, stops at the real rows
        // rounded up to 4: a decode step (one position) with 16-lane vectors and a GQA group of 4 has 4 real rows of 16.
        int d = p.D, group = p.Group, P = p.Positions, W = TV.Count, R = (group * P + W - 1) / W * W;
        int valid = Math.Min(P, p.Tq - i0);
        int valueRows = Math.Min(R, (group * valid + 3) & ~3);
        int keyEnd = p.Limit(i0 + valid - 1);  // the last row sees the most keys
        int maskFrom = p.Limit(i0);           // blocks reaching past this need the per-row causal mask
        int keyStart = p.Start(i0);           // the first row's window starts first
        int maskBelow = p.Start(i0 + valid - 1); // blocks starting before this need the per-row window edge

        // Scratch: qt [d, R], st [KeyBlock, R], o [R, d], and per row m, l, alpha (this block's rescale), limit and start.
        int need = d * R + KeyBlock * R + R * d + 5 * R + 16;
        var buf = t_scratch is { } b && b.Length >= need ? b : (t_scratch = GC.AllocateUninitializedArray<float>(need, pinned: true));
        fixed (float* raw = buf, qd = p.Q.Data, kd = p.K.Data, vd = p.V.Data)
        {
            float* q0 = qd + p.Q.Offset, k0 = kd + p.K.Offset, v0 = vd + p.V.Offset;
            // 64-byte aligned so that whole-vector loads never straddle cache lines.
            float* qt = (float*)(((nint)raw + 63) & ~(nint)63);
            float* st = qt + d * R, o = st + KeyBlock * R, m = o + R * d, l = m + R, alpha = l + R, limit = alpha + R, start = limit + R;

            // Queries, transposed and pre-multiplied by 1/sqrt(d) so that the score kernel's sums are the scaled scores.
            // Padding rows (past Tq, or rounding R up to a vector) get zero queries: harmless, and their results are dropped.
            for (int r = 0; r < R; r++)
            {
                int i = r / group, g = r % group;
                bool real = i < valid;
                float* qi = q0 + (long)(i0 + i) * p.Q.Cols + (kh * group + g) * d;
                for (int c = 0; c < d; c++) qt[c * R + r] = real ? qi[c] * p.Scale : 0;
                limit[r] = real ? p.Limit(i0 + i) : keyEnd;
                start[r] = real ? p.Start(i0 + i) : keyStart;
                m[r] = float.NegativeInfinity;
                l[r] = 0;
            }
            new Span<float>(o, R * d).Clear();

            float* kh0 = k0 + kh * d, vh0 = v0 + kh * d;
            for (int kb = keyStart; kb < keyEnd; kb += KeyBlock)
            {
                int nk = Math.Min(KeyBlock, keyEnd - kb);
                Scores<TV>(qt, kh0 + (long)kb * p.K.Cols, p.K.Cols, d, st, R, nk);
                if (kb + nk > maskFrom) Mask<TV>(st, limit, kb, R, nk);
                if (kb < maskBelow) MaskBelow<TV>(st, start, kb, R, nk);
                Softmax<TV>(st, m, l, alpha, R, nk);
                AccumulateValues<TV>(st, vh0 + (long)kb * p.V.Cols, p.V.Cols, d, alpha, o, R, valueRows, nk);
            }

            // o / l into the output rows; a row that saw no key (causal, Tk < Tq) gets zeros and lse = -inf.
            for (int i = 0; i < valid; i++)
                for (int g = 0; g < group; g++)
                {
                    int r = i * group + g, h = kh * group + g;
                    var dst = p.Output.Row(i0 + i).Slice(h * d, d);
                    if (l[r] == 0)
                    {
                        dst.Clear();
                        if (p.Lse != null) p.Lse.Row(i0 + i)[h] = float.NegativeInfinity;
                        continue;
                    }
                    System.Numerics.Tensors.TensorPrimitives.Divide(new ReadOnlySpan<float>(o + r * d, d), l[r], dst);
                    if (p.Lse != null) p.Lse.Row(i0 + i)[h] = m[r] + MathF.Log(l[r]);
                }
        }
    }

    /// <summary>
    /// st[j, r] = sum over c of k[j, c] qt[c, r] for keys j &lt; nk (rounded up to 4) and all R rows. Register tile: 4 keys
    /// x 2 row vectors, 8 accumulators; per c two query-vector loads and four broadcast K elements feed 8 FMAs. An odd
    /// last row vector goes through the same loop with 4 accumulators.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Scores<TV>(float* qt, float* k, int kStride, int d, float* st, int R, int nk) where TV : struct, IVec<TV>
    {
        int W = TV.Count;
        for (int j = 0; j < nk; j += 4)
        {
            // Past the block's end repeat the last key: those score rows are computed but never read.
            float* k0 = k + (long)j * kStride, k1 = k + (long)Math.Min(j + 1, nk - 1) * kStride;
            float* k2 = k + (long)Math.Min(j + 2, nk - 1) * kStride, k3 = k + (long)Math.Min(j + 3, nk - 1) * kStride;
            int r = 0;
            for (; r + 2 * W <= R; r += 2 * W)
            {
                TV a00 = TV.Zero, a01 = TV.Zero, a10 = TV.Zero, a11 = TV.Zero;
                TV a20 = TV.Zero, a21 = TV.Zero, a30 = TV.Zero, a31 = TV.Zero;
                float* qc = qt + r;
                for (int c = 0; c < d; c++, qc += R)
                {
                    TV x0 = TV.Load(qc), x1 = TV.Load(qc + W), kc;
                    kc = TV.Broadcast(k0[c]); a00 = TV.Fma(kc, x0, a00); a01 = TV.Fma(kc, x1, a01);
                    kc = TV.Broadcast(k1[c]); a10 = TV.Fma(kc, x0, a10); a11 = TV.Fma(kc, x1, a11);
                    kc = TV.Broadcast(k2[c]); a20 = TV.Fma(kc, x0, a20); a21 = TV.Fma(kc, x1, a21);
                    kc = TV.Broadcast(k3[c]); a30 = TV.Fma(kc, x0, a30); a31 = TV.Fma(kc, x1, a31);
                }
                float* s = st + j * R + r;
                TV.Store(a00, s); TV.Store(a01, s + W); s += R;
                TV.Store(a10, s); TV.Store(a11, s + W); s += R;
                TV.Store(a20, s); TV.Store(a21, s + W); s += R;
                TV.Store(a30, s); TV.Store(a31, s + W);
            }
            if (r < R)
            {
                TV a0 = TV.Zero, a1 = TV.Zero, a2 = TV.Zero, a3 = TV.Zero;
                float* qc = qt + r;
                for (int c = 0; c < d; c++, qc += R)
                {
                    TV x = TV.Load(qc);
                    a0 = TV.Fma(TV.Broadcast(k0[c]), x, a0); a1 = TV.Fma(TV.Broadcast(k1[c]), x, a1);
                    a2 = TV.Fma(TV.Broadcast(k2[c]), x, a2); a3 = TV.Fma(TV.Broadcast(k3[c]), x, a3);
                }
                float* s = st + j * R + r;
                TV.Store(a0, s); TV.Store(a1, s + R); TV.Store(a2, s + 2 * R); TV.Store(a3, s + 3 * R);
            }
        }
    }

    /// <summary>Causal mask of a block on the diagonal: st[j, r] = -inf where key kb + j is at or past row r's limit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Mask<TV>(float* st, float* limit, int kb, int R, int nk) where TV : struct, IVec<TV>
    {
        for (int j = 0; j < nk; j++)
        {
            TV key = TV.Broadcast(kb + j), masked = TV.Broadcast(float.NegativeInfinity); // key indices are exact in fp32
            for (int r = 0; r < R; r += TV.Count)
            {
                float* s = st + j * R + r;
                TV.Store(TV.Select(TV.LessThan(key, TV.Load(limit + r)), TV.Load(s), masked), s);
            }
        }
    }

    /// <summary>The sliding window's lower edge: scores of keys before each row's start become -inf.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void MaskBelow<TV>(float* st, float* start, int kb, int R, int nk) where TV : struct, IVec<TV>
    {
        for (int j = 0; j < nk; j++)
        {
            TV key = TV.Broadcast(kb + j), masked = TV.Broadcast(float.NegativeInfinity);
            for (int r = 0; r < R; r += TV.Count)
            {
                float* s = st + j * R + r;
                TV.Store(TV.Select(TV.LessThan(key, TV.Load(start + r)), masked, TV.Load(s)), s);
            }
        }
    }

    /// <summary>
    /// Online softmax step over one block, lane-wise down the key axis: new max, alpha = exp(old max - new max) for the
    /// rescale of l and o, and st[j, r] := exp(st[j, r] - new max), the block's unnormalised weights.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Softmax<TV>(float* st, float* m, float* l, float* alpha, int R, int nk) where TV : struct, IVec<TV>
    {
        for (int r = 0; r < R; r += TV.Count)
        {
            TV mOld = TV.Load(m + r), mNew = mOld;
            for (int j = 0; j < nk; j++) mNew = TV.Max(mNew, TV.Load(st + j * R + r));
            // A row that has seen only masked keys so far still has max -inf; exponentiate against 0 instead, so its
            // weights and alpha come out 0 rather than NaN from (-inf) - (-inf).
            TV shift = TV.Select(TV.Equals(mNew, TV.Broadcast(float.NegativeInfinity)), TV.Zero, mNew);
            TV sum = TV.Zero;
            for (int j = 0; j < nk; j++)
            {
                TV e = Exp(TV.Load(st + j * R + r) - shift);
                TV.Store(e, st + j * R + r);
                sum += e;
            }
            TV a = Exp(mOld - shift); // 1 where the max did not move: Exp(0) is exactly 1 (see Exp)
            TV.Store(a, alpha + r);
            TV.Store(TV.Fma(TV.Load(l + r), a, sum), l + r);
            TV.Store(mNew, m + r);
        }
    }

    /// <summary>
    /// o[r, :] = alpha[r] o[r, :] + sum over j &lt; nk of st[j, r] v[j, :]. Register tile: 4 rows x 4 vectors along the
    /// head dimension, 16 accumulators; per key four V-vector loads and four broadcast weights feed 16 FMAs. Head
    /// dimensions that are not a multiple of 4 vectors finish with 4 rows x 1 vector, then scalar columns.
    /// The block's sum starts from zero and is added to o at the end: summing block by block kept a 16K-key decode row at
    /// 4.5e-7 relative error against float64, where one running sum over all keys gave 2.3e-6 (docs/kernels/cpu-attention.md).
    /// Only the first <paramref name="rows"/> rows (the real ones, rounded up to 4) are summed; R is the row stride of st.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void AccumulateValues<TV>(float* st, float* v, int vStride, int d, float* alpha, float* o, int R, int rows, int nk)
        where TV : struct, IVec<TV>
    {
        int W = TV.Count;
        for (int r = 0; r < rows; r += 4)
        {
            float* o0 = o + r * d, o1 = o0 + d, o2 = o1 + d, o3 = o2 + d;
            TV s0 = TV.Broadcast(alpha[r]), s1 = TV.Broadcast(alpha[r + 1]);
            TV s2 = TV.Broadcast(alpha[r + 2]), s3 = TV.Broadcast(alpha[r + 3]);
            int c = 0;
            for (; c + 4 * W <= d; c += 4 * W)
            {
                TV a00 = TV.Zero, a01 = TV.Zero, a02 = TV.Zero, a03 = TV.Zero;
                TV a10 = TV.Zero, a11 = TV.Zero, a12 = TV.Zero, a13 = TV.Zero;
                TV a20 = TV.Zero, a21 = TV.Zero, a22 = TV.Zero, a23 = TV.Zero;
                TV a30 = TV.Zero, a31 = TV.Zero, a32 = TV.Zero, a33 = TV.Zero;
                float* vj = v + c, pj = st + r;
                for (int j = 0; j < nk; j++, vj += vStride, pj += R)
                {
                    TV x0 = TV.Load(vj), x1 = TV.Load(vj + W), x2 = TV.Load(vj + 2 * W), x3 = TV.Load(vj + 3 * W), w;
                    w = TV.Broadcast(pj[0]); a00 = TV.Fma(w, x0, a00); a01 = TV.Fma(w, x1, a01); a02 = TV.Fma(w, x2, a02); a03 = TV.Fma(w, x3, a03);
                    w = TV.Broadcast(pj[1]); a10 = TV.Fma(w, x0, a10); a11 = TV.Fma(w, x1, a11); a12 = TV.Fma(w, x2, a12); a13 = TV.Fma(w, x3, a13);
                    w = TV.Broadcast(pj[2]); a20 = TV.Fma(w, x0, a20); a21 = TV.Fma(w, x1, a21); a22 = TV.Fma(w, x2, a22); a23 = TV.Fma(w, x3, a23);
                    w = TV.Broadcast(pj[3]); a30 = TV.Fma(w, x0, a30); a31 = TV.Fma(w, x1, a31); a32 = TV.Fma(w, x2, a32); a33 = TV.Fma(w, x3, a33);
                }
                Update(o0 + c, s0, a00); Update(o0 + c + W, s0, a01); Update(o0 + c + 2 * W, s0, a02); Update(o0 + c + 3 * W, s0, a03);
                Update(o1 + c, s1, a10); Update(o1 + c + W, s1, a11); Update(o1 + c + 2 * W, s1, a12); Update(o1 + c + 3 * W, s1, a13);
                Update(o2 + c, s2, a20); Update(o2 + c + W, s2, a21); Update(o2 + c + 2 * W, s2, a22); Update(o2 + c + 3 * W, s2, a23);
                Update(o3 + c, s3, a30); Update(o3 + c + W, s3, a31); Update(o3 + c + 2 * W, s3, a32); Update(o3 + c + 3 * W, s3, a33);
            }
            for (; c + W <= d; c += W)
            {
                TV a0 = TV.Zero, a1 = TV.Zero, a2 = TV.Zero, a3 = TV.Zero;
                float* vj = v + c, pj = st + r;
                for (int j = 0; j < nk; j++, vj += vStride, pj += R)
                {
                    TV x = TV.Load(vj);
                    a0 = TV.Fma(TV.Broadcast(pj[0]), x, a0); a1 = TV.Fma(TV.Broadcast(pj[1]), x, a1);
                    a2 = TV.Fma(TV.Broadcast(pj[2]), x, a2); a3 = TV.Fma(TV.Broadcast(pj[3]), x, a3);
                }
                Update(o0 + c, s0, a0); Update(o1 + c, s1, a1);
                Update(o2 + c, s2, a2); Update(o3 + c, s3, a3);
            }
            for (; c < d; c++)
                for (int t = 0; t < 4; t++)
                {
                    float acc = 0;
                    for (int j = 0; j < nk; j++) acc += st[j * R + r + t] * v[(long)j * vStride + c];
                    o[(r + t) * d + c] = o[(r + t) * d + c] * alpha[r + t] + acc;
                }
        }
    }

    /// <summary>
    /// exp(x) for the x &lt;= 0 the softmax feeds it, to ~1 ulp (Cephes expf): x = n ln2 + r with n = round(x / ln2),
    /// |r| &lt;= ln2 / 2, exp(r) = 1 + r + r^2 P(r), times 2^n built in the exponent bits. Below -87 (including -inf, a
    /// masked score) the result is 0. Written out rather than Vector512.Exp because that one (a) returns 1 + 1 ulp for
    /// exp(0), and rescaling l and o by it once per key block put a 1.5e-5 bias into lse after 16K keys, and (b) is a
    /// call that the runtime left at a slow precompiled version when invoked from these kernels (3x on decode).
    /// Exp(0) is exactly 1 here: n = 0, r = 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static TV Exp<TV>(TV x) where TV : struct, IVec<TV>
    {
        TV xc = TV.Max(x, TV.Broadcast(-87f)); // keeps 2^n a normal float
        TV n = TV.Round(xc * TV.Broadcast(1.44269504f));
        TV r = TV.Fma(n, TV.Broadcast(-0.693359375f), xc);  // ln2 in two parts: the first has few bits, so n x it is exact
        r = TV.Fma(n, TV.Broadcast(2.12194440e-4f), r);
        TV poly = TV.Fma(TV.Broadcast(1.9875691500e-4f), r, TV.Broadcast(1.3981999507e-3f));
        poly = TV.Fma(poly, r, TV.Broadcast(8.3334519073e-3f));
        poly = TV.Fma(poly, r, TV.Broadcast(4.1665795894e-2f));
        poly = TV.Fma(poly, r, TV.Broadcast(1.6666665459e-1f));
        poly = TV.Fma(poly, r, TV.Broadcast(5.0000001201e-1f));
        TV e = TV.Fma(poly, r * r, r) + TV.Broadcast(1f);
        return TV.Select(TV.LessThan(x, TV.Broadcast(-87f)), TV.Zero, e * TV.Pow2(n));
    }

    /// <summary>o := alpha o + blockSum for one vector of an output row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Update<TV>(float* o, TV alpha, TV blockSum) where TV : struct, IVec<TV> =>
        TV.Store(TV.Fma(TV.Load(o), alpha, blockSum), o);

    public static void Merge(CpuTensor acc, CpuTensor accLse, CpuTensor part, CpuTensor partLse, int heads)
    {
        int d = acc.Cols / heads;
        Parallel.For(0, acc.Rows, i =>
        {
            var a = acc.Row(i); var p = part.Row(i);
            var la = accLse.Row(i); var lp = partLse.Row(i);
            for (int h = 0; h < heads; h++)
            {
                float l1 = la[h], l2 = lp[h];
                if (float.IsNegativeInfinity(l2)) continue;
                var ah = a.Slice(h * d, d);
                if (float.IsNegativeInfinity(l1))
                {
                    p.Slice(h * d, d).CopyTo(ah);
                    la[h] = l2;
                    continue;
                }
                float m = MathF.Max(l1, l2);
                float w1 = MathF.Exp(l1 - m), w2 = MathF.Exp(l2 - m), sum = w1 + w2;
                for (int c = 0; c < d; c++) ah[c] = (w1 * ah[c] + w2 * p[h * d + c]) / sum;
                la[h] = m + MathF.Log(sum);
            }
        });
    }

    /// <summary>Merges count stacked partial results of the same rows (IBackend.MergeAttentionParts), in rank order.</summary>
    public static void MergeParts(CpuTensor parts, CpuTensor lses, int count, int heads, CpuTensor output)
    {
        int t = output.Rows, d = output.Cols / heads;
        Parallel.For(0, t, i =>
        {
            var o = output.Row(i);
            var w = new float[count];
            for (int h = 0; h < heads; h++)
            {
                float m = float.NegativeInfinity;
                for (int r = 0; r < count; r++) m = MathF.Max(m, lses.Row(r * t + i)[h]);
                var oh = o.Slice(h * d, d);
                oh.Clear();
                if (float.IsNegativeInfinity(m)) continue;
                float sum = 0;
                for (int r = 0; r < count; r++) sum += w[r] = MathF.Exp(lses.Row(r * t + i)[h] - m);
                for (int r = 0; r < count; r++)
                {
                    if (w[r] == 0) continue;
                    var ph = parts.Row(r * t + i).Slice(h * d, d);
                    for (int c = 0; c < d; c++) oh[c] += w[r] * ph[c];
                }
                for (int c = 0; c < d; c++) oh[c] /= sum;
            }
        });
    }
}
