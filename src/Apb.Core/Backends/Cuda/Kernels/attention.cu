// Attention forward: softmax(q k^T / sqrt(d)) v per head, GQA (query head h reads KV head h / (heads / kvHeads), never a
// repeated copy), bottom-right causal alignment (row i sees key j when j <= i + Tk - Tq), fp32 online softmax, LSE out
// (natural log, of the scaled scores). Rows that see no key get output 0 and LSE -inf. The generic kernel also takes a
// sliding window (window > 0 with causal: row i sees only the window keys ending at its own, Mistral's mask).
//
// Two kernels (attention_hopper.cu has the sm_90 one, decode.cu the one for a few query rows):
//  - apb_attention_generic: any head dim <= 256; one warp per (query row, head); 32 keys per step, one per lane. Slow,
//    simple, the fallback for the tiny fixtures' head dims and the yardstick for the tensor-core kernel.
//  - apb_attention_mma2_d64 / _d128: FlashAttention-2 on mma.sync.m16n8k16 (bf16 in, fp32 accumulate), sm_80+.
//    64 query rows per block (4 warps x 16 rows), 64-key tiles of K and V double-buffered in shared memory.
//    (The first version, without ldmatrix and cp.async, was removed once this one replaced it: docs/kernels/attention.md.)

#include "bf16.cuh"

// ---------------------------------------------------------------------------------------------------------------------
// Generic path. Block: APB_GENERIC_WARPS warps, each one query row of head blockIdx.y. Shared memory: the warp's query
// row in fp32 (so each lane can compute a whole dot product for its own key without shuffles).
#define APB_GENERIC_WARPS 4

extern "C" __global__ void __launch_bounds__(APB_GENERIC_WARPS * 32)
apb_attention_generic(const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v, bf16* __restrict__ o,
                      void* lse, int lseF32, int Tq, int Tk, int heads, int kvHeads, int d,
                      long qStride, long kStride, long oStride, float scale, int causal, int window)
{
    __shared__ float qsh[APB_GENERIC_WARPS][256];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int i = blockIdx.x * APB_GENERIC_WARPS + warp, h = blockIdx.y;
    if (i >= Tq) return; // whole warps only: nothing below synchronizes more than one warp
    int kh = h / (heads / kvHeads);
    float* qw = qsh[warp];
    for (int c = lane; c < d; c += 32) qw[c] = bf2f(q[i * qStride + (long)h * d + c]);
    __syncwarp();

    int visible = Tk;
    if (causal) { visible = i + Tk - Tq + 1; visible = visible < 0 ? 0 : (visible > Tk ? Tk : visible); }
    int first = window > 0 && visible > window ? visible - window : 0; // keys [first, visible) are seen

    float acc[8];
#pragma unroll
    for (int e = 0; e < 8; e++) acc[e] = 0.f;
    float m = APB_NEG_INF, l = 0.f;
    const bf16* kh0 = k + (long)kh * d;
    const bf16* vh0 = v + (long)kh * d;

    for (int j0 = first; j0 < visible; j0 += 32)
    {
        int j = j0 + lane;
        float s = APB_NEG_INF;
        if (j < visible)
        {
            const bf16* kr = kh0 + j * kStride;
            float dot = 0.f;
            for (int c = 0; c < d; c++) dot += qw[c] * bf2f(kr[c]);
            s = dot * scale;
        }
        float cmax = s;
        for (int off = 16; off > 0; off >>= 1) cmax = fmaxf(cmax, __shfl_xor_sync(0xffffffffu, cmax, off));
        float mnew = fmaxf(m, cmax);              // finite: lane 0's key is visible
        float corr = expf(m - mnew);              // 0 on the first step (m = -inf)
        float p = j < visible ? expf(s - mnew) : 0.f;
        float psum = p;
        for (int off = 16; off > 0; off >>= 1) psum += __shfl_xor_sync(0xffffffffu, psum, off);
        l = l * corr + psum;
        m = mnew;
#pragma unroll
        for (int e = 0; e < 8; e++) acc[e] *= corr;
        int n = visible - j0 < 32 ? visible - j0 : 32;
        for (int jj = 0; jj < n; jj++)
        {
            float pj = __shfl_sync(0xffffffffu, p, jj);
            const bf16* vr = vh0 + (long)(j0 + jj) * kStride;
#pragma unroll
            for (int e = 0; e < 8; e++)
            {
                int c = lane + 32 * e;
                if (c < d) acc[e] += pj * bf2f(vr[c]);
            }
        }
    }

    bf16* orow = o + i * oStride + (long)h * d;
    float inv = visible > 0 ? 1.f / l : 0.f;
#pragma unroll
    for (int e = 0; e < 8; e++)
    {
        int c = lane + 32 * e;
        if (c < d) orow[c] = f2bf(acc[e] * inv);
    }
    if (lse != 0 && lane == 0) store_any(lse, (long)i * heads + h, lseF32, visible > 0 ? m + logf(l) : APB_NEG_INF);
}

// ---------------------------------------------------------------------------------------------------------------------
// Tensor-core path (FlashAttention-2 schedule on mma.sync).
//
// Fragment layouts of mma.m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16"), g = lane / 4, t = lane % 4:
//   A (16x16, row): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
//   B (16x8, col):  b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
//   C (16x8, f32):  c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1]
// S = Q K^T: A = Q rows (registers for the whole kernel), B[k][n] = K[key n][dim k]. O += P V: the C fragments of two
// adjacent 8-key S blocks are exactly the A fragment of P (FA2's register reuse); B[k][n] = V[key k][dim n].
// Shared rows are padded by 8 bf16 (16 bytes): a row stride of d + 8 elements puts the 8 rows a fragment load touches
// in different banks.

#define APB_BM 64
#define APB_BN 64

// ---------------------------------------------------------------------------------------------------------------------
// K and V fragments come by ldmatrix (x4: one instruction gives the B fragments of two mma; .trans transposes V on the
// way), and K/V tiles are staged by cp.async into two shared buffers, so tile j+1 streams in while tile j is computed.
// Shared memory: 2 stages x (K, V) x 64 rows x (D + 8) bf16 = 69,632 bytes at D = 128 (dynamic; the host raises the
// 48 KB default).

__device__ __forceinline__ void ldsm_x4(unsigned addr, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
}

__device__ __forceinline__ void ldsm_x4_trans(unsigned addr, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
}

// 16 bytes global -> shared, bypassing L1; src_bytes = 0 writes zeros (rows past Tk) without reading.
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, int srcBytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(dst), "l"(src), "r"(srcBytes));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_1() { asm volatile("cp.async.wait_group 1;\n" ::); }
__device__ __forceinline__ void cp_async_wait_0() { asm volatile("cp.async.wait_group 0;\n" ::); }

template <int D>
__device__ __forceinline__ void load_tile_async(bf16* ks, bf16* vs, const bf16* kbase, const bf16* vbase, int n0, int Tk, long kStride)
{
    constexpr int LD = D + 8;
    constexpr int CHUNKS = APB_BN * D / 8;
    for (int idx = threadIdx.x; idx < CHUNKS; idx += blockDim.x)
    {
        int r = idx / (D / 8), c = (idx % (D / 8)) * 8;
        bool in = n0 + r < Tk;
        long row = in ? n0 + r : 0; // a valid address even when nothing is read
        cp_async16(smem_u32(ks + r * LD + c), kbase + row * kStride + c, in ? 16 : 0);
        cp_async16(smem_u32(vs + r * LD + c), vbase + row * kStride + c, in ? 16 : 0);
    }
}

template <int D>
__device__ __forceinline__ void attention_mma2(const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
                                               bf16* __restrict__ o, void* lse, int lseF32, int Tq, int Tk, int heads, int kvHeads,
                                               long qStride, long kStride, long oStride, float scale, int causal)
{
    constexpr int LD = D + 8;
    constexpr int KSTEPS = D / 16;
    constexpr int DBLK = D / 8;
    constexpr int TILE = APB_BN * LD;   // elements of one K or V tile
    extern __shared__ __align__(16) bf16 smem[];   // [stage][K, V][64][LD]

    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int qb = gridDim.x - 1 - blockIdx.x;
    int h = blockIdx.y, kh = h / (heads / kvHeads);
    int shift = Tk - Tq;
    int row0 = qb * APB_BM + warp * 16;
    int rA = row0 + g, rB = row0 + g + 8;

    int keyEnd = Tk;
    if (causal)
    {
        int lastRow = qb * APB_BM + APB_BM - 1;
        if (lastRow > Tq - 1) lastRow = Tq - 1;
        keyEnd = lastRow + shift + 1;
        if (keyEnd > Tk) keyEnd = Tk;
        if (keyEnd < 0) keyEnd = 0;
    }
    int tiles = (keyEnd + APB_BN - 1) / APB_BN;
    const bf16* kbase = k + (long)kh * D;
    const bf16* vbase = v + (long)kh * D;
    if (tiles > 0) load_tile_async<D>(smem, smem + TILE, kbase, vbase, 0, Tk, kStride);
    cp_async_commit();

    unsigned qa[KSTEPS][4];
    {
        const bf16* qA = q + (long)rA * qStride + (long)h * D;
        const bf16* qB = q + (long)rB * qStride + (long)h * D;
#pragma unroll
        for (int kk = 0; kk < KSTEPS; kk++)
        {
            int c = kk * 16 + 2 * t;
            qa[kk][0] = rA < Tq ? *(const unsigned*)(qA + c) : 0u;
            qa[kk][1] = rB < Tq ? *(const unsigned*)(qB + c) : 0u;
            qa[kk][2] = rA < Tq ? *(const unsigned*)(qA + c + 8) : 0u;
            qa[kk][3] = rB < Tq ? *(const unsigned*)(qB + c + 8) : 0u;
        }
    }

    float oacc[DBLK][4];
#pragma unroll
    for (int nb = 0; nb < DBLK; nb++) { oacc[nb][0] = oacc[nb][1] = oacc[nb][2] = oacc[nb][3] = 0.f; }
    float mA = APB_NEG_INF, mB = APB_NEG_INF, lA = 0.f, lB = 0.f;
    const float sl2 = scale * 1.4426950408889634f;

    // Per-lane ldmatrix row offsets (in elements) inside a tile. K (no transpose): lanes 8m..8m+7 address rows (keys)
    // 0..7 at dim offset 8m, giving b0, b1 of k-step kk and b0, b1 of kk + 1. V (transpose): lanes address key
    // (lane & 7) + 8 x bit 3 at dim offset 8 x bit 4, giving b0, b1 of dim block nb and of nb + 1.
    int kOff = (lane & 7) * LD + (lane >> 3) * 8;
    int vOff = ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;

    for (int j = 0; j < tiles; j++)
    {
        int n0 = j * APB_BN;
        bf16* ks = smem + (j & 1) * 2 * TILE;
        bf16* vs = ks + TILE;
        if (j + 1 < tiles)
        {
            bf16* kn = smem + ((j + 1) & 1) * 2 * TILE;
            load_tile_async<D>(kn, kn + TILE, kbase, vbase, n0 + APB_BN, Tk, kStride);
            cp_async_commit();
            cp_async_wait_1();   // tile j has landed; tile j + 1 may still be in flight
        }
        else cp_async_wait_0();
        __syncthreads();

        unsigned kAddr = smem_u32(ks + kOff), vAddr = smem_u32(vs + vOff);
        float s[APB_BN / 8][4];
#pragma unroll
        for (int nb = 0; nb < APB_BN / 8; nb++)
        {
            s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < KSTEPS; kk += 2)
            {
                unsigned b0, b1, b2, b3;
                ldsm_x4(kAddr + (unsigned)((nb * 8 * LD + kk * 16) * 2), b0, b1, b2, b3);
                mma_bf16(s[nb], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b0, b1);
                mma_bf16(s[nb], qa[kk + 1][0], qa[kk + 1][1], qa[kk + 1][2], qa[kk + 1][3], b2, b3);
            }
        }

        bool needMask = n0 + APB_BN > Tk || (causal && n0 + APB_BN - 1 > row0 + shift);
        if (needMask)
        {
#pragma unroll
            for (int nb = 0; nb < APB_BN / 8; nb++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                {
                    int key = n0 + nb * 8 + 2 * t + (e & 1);
                    int row = e < 2 ? rA : rB;
                    bool visible = key < Tk && (!causal || key <= row + shift);
                    if (!visible) s[nb][e] = APB_NEG_INF;
                }
        }

        float tA = APB_NEG_INF, tB = APB_NEG_INF;
#pragma unroll
        for (int nb = 0; nb < APB_BN / 8; nb++)
        {
            tA = fmaxf(tA, fmaxf(s[nb][0], s[nb][1]));
            tB = fmaxf(tB, fmaxf(s[nb][2], s[nb][3]));
        }
        tA = fmaxf(tA, __shfl_xor_sync(0xffffffffu, tA, 1)); tA = fmaxf(tA, __shfl_xor_sync(0xffffffffu, tA, 2));
        tB = fmaxf(tB, __shfl_xor_sync(0xffffffffu, tB, 1)); tB = fmaxf(tB, __shfl_xor_sync(0xffffffffu, tB, 2));
        float nA = fmaxf(mA, tA), nB = fmaxf(mB, tB);
        float offA = nA == APB_NEG_INF ? 0.f : nA * sl2, offB = nB == APB_NEG_INF ? 0.f : nB * sl2;
        float cA = exp2f(mA * sl2 - offA), cB = exp2f(mB * sl2 - offB);
        mA = nA; mB = nB;
        lA *= cA; lB *= cB;
#pragma unroll
        for (int nb = 0; nb < DBLK; nb++) { oacc[nb][0] *= cA; oacc[nb][1] *= cA; oacc[nb][2] *= cB; oacc[nb][3] *= cB; }
#pragma unroll
        for (int nb = 0; nb < APB_BN / 8; nb++)
        {
            s[nb][0] = exp2f(s[nb][0] * sl2 - offA); s[nb][1] = exp2f(s[nb][1] * sl2 - offA);
            s[nb][2] = exp2f(s[nb][2] * sl2 - offB); s[nb][3] = exp2f(s[nb][3] * sl2 - offB);
            lA += s[nb][0] + s[nb][1];
            lB += s[nb][2] + s[nb][3];
        }

#pragma unroll
        for (int kb = 0; kb < APB_BN / 16; kb++)
        {
            unsigned a0 = pack_bf16(s[2 * kb][0], s[2 * kb][1]);
            unsigned a1 = pack_bf16(s[2 * kb][2], s[2 * kb][3]);
            unsigned a2 = pack_bf16(s[2 * kb + 1][0], s[2 * kb + 1][1]);
            unsigned a3 = pack_bf16(s[2 * kb + 1][2], s[2 * kb + 1][3]);
#pragma unroll
            for (int nb = 0; nb < DBLK; nb += 2)
            {
                unsigned b0, b1, b2, b3;
                ldsm_x4_trans(vAddr + (unsigned)((kb * 16 * LD + nb * 8) * 2), b0, b1, b2, b3);
                mma_bf16(oacc[nb], a0, a1, a2, a3, b0, b1);
                mma_bf16(oacc[nb + 1], a0, a1, a2, a3, b2, b3);
            }
        }
        __syncthreads(); // every warp is done with this stage before the next iteration refills it
    }

    lA += __shfl_xor_sync(0xffffffffu, lA, 1); lA += __shfl_xor_sync(0xffffffffu, lA, 2);
    lB += __shfl_xor_sync(0xffffffffu, lB, 1); lB += __shfl_xor_sync(0xffffffffu, lB, 2);
    float iA = lA > 0.f ? 1.f / lA : 0.f, iB = lB > 0.f ? 1.f / lB : 0.f;
    if (rA < Tq)
    {
        bf16* out = o + (long)rA * oStride + (long)h * D + 2 * t;
#pragma unroll
        for (int nb = 0; nb < DBLK; nb++) *(unsigned*)(out + nb * 8) = pack_bf16(oacc[nb][0] * iA, oacc[nb][1] * iA);
        if (lse != 0 && t == 0) store_any(lse, (long)rA * heads + h, lseF32, lA > 0.f ? mA * scale + logf(lA) : APB_NEG_INF);
    }
    if (rB < Tq)
    {
        bf16* out = o + (long)rB * oStride + (long)h * D + 2 * t;
#pragma unroll
        for (int nb = 0; nb < DBLK; nb++) *(unsigned*)(out + nb * 8) = pack_bf16(oacc[nb][2] * iB, oacc[nb][3] * iB);
        if (lse != 0 && t == 0) store_any(lse, (long)rB * heads + h, lseF32, lB > 0.f ? mB * scale + logf(lB) : APB_NEG_INF);
    }
}

extern "C" __global__ void __launch_bounds__(128)
apb_attention_mma2_d64(const bf16* q, const bf16* k, const bf16* v, bf16* o, void* lse, int lseF32, int Tq, int Tk, int heads,
                       int kvHeads, long qStride, long kStride, long oStride, float scale, int causal)
{
    attention_mma2<64>(q, k, v, o, lse, lseF32, Tq, Tk, heads, kvHeads, qStride, kStride, oStride, scale, causal);
}

extern "C" __global__ void __launch_bounds__(128)
apb_attention_mma2_d128(const bf16* q, const bf16* k, const bf16* v, bf16* o, void* lse, int lseF32, int Tq, int Tk, int heads,
                        int kvHeads, long qStride, long kStride, long oStride, float scale, int causal)
{
    attention_mma2<128>(q, k, v, o, lse, lseF32, Tq, Tk, heads, kvHeads, qStride, kStride, oStride, scale, causal);
}
