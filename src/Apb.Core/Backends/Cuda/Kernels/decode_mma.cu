// Decode attention on tensor cores (version 3 of the split-KV decode; docs/kernels/decode-mma.md): the calls version 2
// of decode.cu serves (a few query rows against a long cache), with the dot products on mma.sync instead of CUDA cores.
// Version 2 streams about 5.8e9 (key, KV head) rows a second whatever the bytes per row, bf16 or fp8: it is bound by
// the 2048 fp32 flops, shuffles and softmax each row costs (docs/kernels/decode-fp8.md). Here the GQA group's (query
// row, head) pairs are the M rows of an m16n8k16 (8 or 16 of them, the rest zero), so a row of K costs a share of two
// mma per 16 keys and a row of V a share of D/16.
//
// Per block: 4 warps, each walking its own 16-key tiles of the split (warp w takes keys t0 + 16w, t0 += 64), keeping
// its own running softmax; at the end the block merges its warps through shared memory into the split's partial
// (decode.cuh, for decode.cu's merge kernel). No shared memory and no barrier in the loop: every lane loads its
// fragments' bytes straight from global memory, the next tile's loads issued before this tile's first mma (DV3_PF).
//
// Per tile, with r = lane / 4, c = lane % 4 (the fragment layouts of attention.cu's comment):
//  S = Q K^T (M = pairs, N = 8 keys, two n-tiles): a k-step's 16 dims are permuted so that a lane's fragments of
//    k-steps 2j and 2j + 1 are 8 consecutive dims, 32j + 8c .. + 7: one 16-byte load of Q and of each K row (8 bytes
//    of fp8 codes). The same permutation on both sides leaves the dot unchanged. Lane (r, c) loads key r of each n-tile.
//  O^T = V^T P^T (M = 16 dims, N = 8 pairs, K = the tile's 16 keys): P^T's B fragment is exactly S's C fragments of the
//    two n-tiles (no shuffle), and the output's columns are pairs, so a pair's rescale is a shuffle from its row's lanes.
//    V^T's A fragment pairs two keys per register (keys 2c, 2c + 1 and 2c + 8, 2c + 9): the lane loads those 4 rows'
//    slices and interleaves them with byte permutes. Which dims a lane's m-tile rows are is ours to choose (the output
//    is written back through the same map, dv3_dim): bf16, m-tile mt's rows r and r + 8 are dims D/8 r + 2 mt and + 1,
//    so a lane reads D/8 consecutive dims (D/4 bytes) of a key; fp8, the m-tiles 2j, 2j + 1 are scale group j's 32
//    dims, rows r and r + 8 being 32j + 4r + 2(mt % 2) and + 1, so that each m-tile lies in one scale group.
//  fp8 (--kv-cache-dtype fp8; fp8.cuh's format, a fp32 scale per 32 values): K codes become f16 by cvt (exact) for
//    an f16 S = Q K^T with Q in f16 (DV3_K_F16); V codes become bf16 exactly by moving bits (dv3_e4m3x2, no cvt), as
//    the code's value x 2^-120. The scale of a key's group is applied outside the mma, by keeping one S accumulator
//    per group (sum over j of scale_j x S_j) and by folding V's scale into P (P V has one P^T fragment per group). P is
//    multiplied by 2^100 (exact: a power of two), so no product comes near fp32's denormals; 2^20 undoes the rest.
// Conventions as decode.cu: fp32 softmax in log2 units (exp2), causal = bottom-right aligned, a pair that sees no key
// gets output 0 and LSE -inf; kernels launched with programmatic dependent launch (pdl_enter first).

#include "bf16.cuh"
#include "fp8.cuh"
#include "decode.cuh"

#define DV3_THREADS 128
#define DV3_WARPS (DV3_THREADS / 32)
#define DV3_TILE 16   // keys per warp step

// Two e4m3 codes, in bytes 0 and 2 of t (bytes 1 and 3 are ignored), as a bf16 pair (byte 0's in the low half) whose
// values are the codes' times 2^-120, exactly: a code's 7 magnitude bits (4 exponent, 3 mantissa) placed in the low
// bits of a bf16's exponent and the top of its mantissa read as 2^(e - 127) (1 + m/8) = value x 2^(7 - 127), and a
// subnormal code (e = 0) lands on a bf16 subnormal by the same rule; the sign moves to the half's bit 15.
__device__ __forceinline__ unsigned dv3_e4m3x2(unsigned t)
{
    return ((t << 4) & 0x07f007f0u) | ((t << 8) & 0x80008000u);
}

// DV3_K_F16, 1 (the default) for fp8 to take the scores on f16 mma: the K codes become f16 pairs by one cvt per two
// codes (every e4m3 value is an f16 one) in place of dv3_e4m3x2's five integer ops, and Q goes to f16 (exact for |q|
// between 2^-14 and 65504, finer than bf16 there; smaller values lose bits as f16 subnormals). P V stays on bf16,
// where P times V's scale has fp32's range (f16's would underflow for small scales). Measured: fp8 at 128K 0.104 ->
// 0.098 ms, the same call (docs/kernels/decode-mma.md).
#ifndef DV3_K_F16
#define DV3_K_F16 1
#endif

// Two codes (the low 16 bits of w; the low byte becomes the low half) as an f16 pair, exactly.
__device__ __forceinline__ unsigned dv3_e4m3x2_f16(unsigned w)
{
#if APB_FP8_CVT
    unsigned short in = (unsigned short)(w & 0xffffu);
    unsigned h2;
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h2) : "h"(in));
    return h2;
#else
    return 0u;   // never reached: the host refuses fp8 before sm_89
#endif
}

__device__ __forceinline__ unsigned dv3_pack_f16(float lo, float hi)
{
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ void dv3_mma_f16(float* c, unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0, unsigned b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned dv3_prmt(unsigned a, unsigned b, unsigned sel)
{
    unsigned r;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
    return r;
}

// The NG fp32 scales of KV head kh in a row's scale block (16 bytes at D 128, 8 at D 64: one vector load; the host
// keeps rows 16-byte aligned), or zeros past the split's end.
template <int NG>
__device__ __forceinline__ void dv3_scales(const unsigned char* scales, int kh, bool ok, float (&f)[NG])
{
    if constexpr (NG == 4)
    {
        uint4 x; x.x = x.y = x.z = x.w = 0u;
        if (ok) x = ((const uint4*)scales)[kh];
        f[0] = __uint_as_float(x.x); f[1] = __uint_as_float(x.y); f[2] = __uint_as_float(x.z); f[3] = __uint_as_float(x.w);
    }
    else
    {
        uint2 x; x.x = x.y = 0u;
        if (ok) x = ((const uint2*)scales)[kh];
        f[0] = __uint_as_float(x.x); f[1] = __uint_as_float(x.y);
    }
}

// The dim an O^T fragment row holds: m-tile mt, row r (0..7) or r + 8 (hi).
template <int D, bool FP8>
__device__ __forceinline__ int dv3_dim(int mt, int r, int hi)
{
    return FP8 ? 32 * (mt >> 1) + 4 * r + 2 * (mt & 1) + hi : (D / 8) * r + 2 * mt + hi;
}

// Query fragments of pair p (A rows of S): f[2j + h][0] holds dims 32j + 8c + 4h + {0, 1}, f[..][1] + {2, 3}; zero
// for a pair past the call's. fp8 multiplies them by 2^100 (exact), or with DV3_K_F16 rounds them to f16. Returns the
// keys the pair sees (its causal limit).
template <int D, bool FP8>
__device__ __forceinline__ int dv3_query(const bf16* __restrict__ q, long qStride, int p, int pairs, int g, int kh, int Tq, int Tk,
    int causal, int c, unsigned (&f)[D / 16][2])
{
    if (p >= pairs)
    {
#pragma unroll
        for (int k = 0; k < D / 16; k++) f[k][0] = f[k][1] = 0u;
        return Tk;
    }
    int i = p / g, h = kh * g + (p - i * g);
    const bf16* row = q + (long)i * qStride + (long)h * D + 8 * c;
#pragma unroll
    for (int j = 0; j < D / 32; j++)
    {
        uint4 x = *(const uint4*)(row + 32 * j);
        if constexpr (FP8 && DV3_K_F16)
        {
            x.x = dv3_pack_f16(bf_lo(x.x), bf_hi(x.x)); x.y = dv3_pack_f16(bf_lo(x.y), bf_hi(x.y));
            x.z = dv3_pack_f16(bf_lo(x.z), bf_hi(x.z)); x.w = dv3_pack_f16(bf_lo(x.w), bf_hi(x.w));
        }
        else if constexpr (FP8)
        {
            const float up = 1.2676506002282294e30f;   // 2^100
            x.x = pack_bf16(bf_lo(x.x) * up, bf_hi(x.x) * up); x.y = pack_bf16(bf_lo(x.y) * up, bf_hi(x.y) * up);
            x.z = pack_bf16(bf_lo(x.z) * up, bf_hi(x.z) * up); x.w = pack_bf16(bf_lo(x.w) * up, bf_hi(x.w) * up);
        }
        f[2 * j][0] = x.x; f[2 * j][1] = x.y; f[2 * j + 1][0] = x.z; f[2 * j + 1][1] = x.w;
    }
    return causal ? Tk - Tq + i + 1 : Tk;
}

// Knobs (docs/kernels/decode-mma.md has what each measured, bench/gpu/decode_fp8_variants.sh tries them):
// DV3_PF, 1 (the default) to issue the next tile's loads before this tile's math, a register double buffer: fp8 at
// 128K 0.127 -> 0.105 ms, bf16 unchanged;
// DV3_SCALE_SHFL, 1 (the default) for fp8 to load one scale per lane and key (group c of the key it loads K for) and
// hand the others over by shuffles, in place of 8 vector loads of 4 scales per tile: as fast with DV3_PF, and 175
// registers in place of 225;
// DV3_MIN_BLOCKS=N, unset by default, a register cap that fits N blocks per SM (3, at 128K: fp8 0.100 ms against
// 0.103 with the other defaults, but bf16 spills and falls from 0.135 to 0.213).
#ifndef DV3_PF
#define DV3_PF 1
#endif
// DV3_PF_FP8, the fp8 kernels' own DV3_PF (default: the same); 2 keeps two tiles in flight while one is computed (an
// fp8 tile is 36 registers of a lane, a bf16 one 64): 0.107 ms at 128K against 0.103, so not the default.
#ifndef DV3_PF_FP8
#define DV3_PF_FP8 DV3_PF
#endif
#ifndef DV3_SCALE_SHFL
#define DV3_SCALE_SHFL 1
#endif
#ifdef DV3_MIN_BLOCKS
#define DV3_BOUNDS __launch_bounds__(DV3_THREADS, DV3_MIN_BLOCKS)
#else
#define DV3_BOUNDS __launch_bounds__(DV3_THREADS)
#endif

// A warp's 16-key tile as a lane holds it after its loads. K: key r of each n-tile (k[nt]), the lane's 8 dims of each
// 32 (bf16: 8 values; fp8: .x, .y hold 8 codes). V: keys 2c, 2c + 1, 2c + 8, 2c + 9 of the tile (v[0..3]), the lane's
// slice (bf16: D/8 dims as D/16 words; fp8: a u32 of 4 codes per group). fp8 scales: of the same 4 keys, every group
// (ks[e][j]); or, with DV3_SCALE_SHFL, of the lane's K keys, group c only (ks[nt][0]), the rest by shuffle.
template <int D, bool FP8>
struct Dv3Tile
{
    static constexpr int NG = D / 32;
    static constexpr int SN = !FP8 ? 1 : DV3_SCALE_SHFL ? 2 : 4, SG = !FP8 || DV3_SCALE_SHFL ? 1 : NG;
    uint4 k[2][NG];
    unsigned v[4][FP8 ? NG : D / 16];
    float ks[SN][SG], vs[SN][SG];

    // The scale of group j of the key in C column 2c + e of n-tile nt (key 8 nt + 2c + e of the tile).
    __device__ __forceinline__ float kScale(int nt, int e, int j, int c) const
    {
        return DV3_SCALE_SHFL ? __shfl_sync(0xffffffffu, ks[nt][0], 4 * (2 * c + e) + j) : ks[(2 * nt + e) % SN][j % SG];
    }
    __device__ __forceinline__ float vScale(int nt, int e, int j, int c) const
    {
        return DV3_SCALE_SHFL ? __shfl_sync(0xffffffffu, vs[nt][0], 4 * (2 * c + e) + j) : vs[(2 * nt + e) % SN][j % SG];
    }
};

// The loads of the tile at key t0 (keys at or past end read as zeros).
template <int D, bool FP8>
__device__ __forceinline__ void dv3_load(Dv3Tile<D, FP8>& T, long t0, long end, const unsigned char* __restrict__ kRows,
    const unsigned char* __restrict__ vRows, long rowBytes, int scaleOffset, int kh, int r, int c)
{
    constexpr int NG = D / 32;
    constexpr long elem = FP8 ? 1 : 2;
    const unsigned char* kHead = kRows + (long)kh * D * elem;
    const unsigned char* vHead = vRows + (long)kh * D * elem;
#pragma unroll
    for (int nt = 0; nt < 2; nt++)
    {
        long t = t0 + 8 * nt + r;
        const unsigned char* row = kHead + t * rowBytes + 8 * c * elem;
#pragma unroll
        for (int j = 0; j < NG; j++)
        {
            uint4 x; x.x = x.y = x.z = x.w = 0u;
            if (t < end)
            {
                if constexpr (FP8) { uint2 y = *(const uint2*)(row + 32 * j); x.x = y.x; x.y = y.y; }
                else x = *(const uint4*)(row + 64 * j);
            }
            T.k[nt][j] = x;
        }
        if constexpr (FP8 && DV3_SCALE_SHFL)
        {
            bool ok = t < end && c < NG;
            T.ks[nt][0] = ok ? ((const float*)(kRows + t * rowBytes + scaleOffset))[kh * NG + c] : 0.f;
            T.vs[nt][0] = ok ? ((const float*)(vRows + t * rowBytes + scaleOffset))[kh * NG + c] : 0.f;
        }
    }
#pragma unroll
    for (int e = 0; e < 4; e++)
    {
        long t = t0 + 2 * c + (e & 1) + 8 * (e >> 1);
        bool ok = t < end;
        if constexpr (FP8)
        {
            const unsigned char* row = vHead + t * rowBytes + 4 * r;
#pragma unroll
            for (int j = 0; j < NG; j++) T.v[e][j] = ok ? *(const unsigned*)(row + 32 * j) : 0u;
            if constexpr (!DV3_SCALE_SHFL)
            {
                dv3_scales<NG>(kRows + t * rowBytes + scaleOffset, kh, ok, T.ks[e]);
                dv3_scales<NG>(vRows + t * rowBytes + scaleOffset, kh, ok, T.vs[e]);
            }
        }
        else
        {
            const uint4* row = (const uint4*)(vHead + t * rowBytes + (D / 8) * r * 2);
#pragma unroll
            for (int w = 0; w < D / 64; w++)
            {
                uint4 y; y.x = y.y = y.z = y.w = 0u;
                if (ok) y = row[w];
                T.v[e][4 * w] = y.x; T.v[e][4 * w + 1] = y.y; T.v[e][4 * w + 2] = y.z; T.v[e][4 * w + 3] = y.w;
            }
        }
    }
}

// A split of the keys for the call's pairs (at most 8, or 16 with HI) of KV head blockIdx.y. K and V are rows of
// rowBytes: bf16 values, or fp8 codes followed (at byte scaleOffset) by the row's fp32 scales.
template <int D, bool FP8, bool HI>
__device__ __forceinline__ void decode_mma(const bf16* __restrict__ q, const unsigned char* __restrict__ kRows,
    const unsigned char* __restrict__ vRows, long rowBytes, int scaleOffset, float* __restrict__ partO, float* __restrict__ partLse,
    int Tq, int Tk, int heads, int kvHeads, long qStride, float scale, int causal, int keysPerSplit, long rowBase)
{
    constexpr int KS = D / 16;                 // k-steps of S, and m-tiles of O^T
    constexpr int NG = D / 32;                 // scale groups (fp8), and 16-byte K slices per lane
    constexpr int PM = HI ? 16 : 8;            // pairs a block can hold
    constexpr int NH = HI ? 2 : 1;             // pair halves: rows r and r + 8 of S, N-tiles of O^T
    __shared__ float s_m[DV3_WARPS][PM], s_l[DV3_WARPS][PM];
    __shared__ float s_o[DV3_WARPS][PM][D];

    const int split = blockIdx.x, splits = gridDim.x, kh = blockIdx.y;
    const int g = heads / kvHeads, pairs = Tq * g;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, r = lane >> 2, c = lane & 3;
    // S in log2 units: scale x log2 e; fp8's 2^20 undoes Q's 2^100 against the codes' 2^-120.
    const float sScale = scale * 1.4426950408889634f * (FP8 && !DV3_K_F16 ? 1048576.f : 1.f);

    unsigned qa[KS][2], qb[KS][2];
    int lim[2];
    lim[0] = dv3_query<D, FP8>(q, qStride, r, pairs, g, kh, Tq, Tk, causal, c, qa);
    lim[1] = HI ? dv3_query<D, FP8>(q, qStride, r + 8, pairs, g, kh, Tq, Tk, causal, c, qb) : Tk;
    if (!HI)
    {
#pragma unroll
        for (int k = 0; k < KS; k++) qb[k][0] = qb[k][1] = 0u;
    }

    long start = (long)split * keysPerSplit, end = start + keysPerSplit;
    if (end > Tk) end = Tk;
    if (causal)
    {
        long last = (long)Tk - Tq + (pairs - 1) / g + 1; // keys the widest-seeing pair sees
        if (end > last) end = last;
    }

    float m[2] = {APB_NEG_INF, APB_NEG_INF}, l[2] = {0.f, 0.f};
    float o[KS][NH][4];
#pragma unroll
    for (int mt = 0; mt < KS; mt++)
#pragma unroll
        for (int hh = 0; hh < NH; hh++) o[mt][hh][0] = o[mt][hh][1] = o[mt][hh][2] = o[mt][hh][3] = 0.f;

    // PF tiles ahead of the one computed are in flight (0: the next tile's loads go out after this one's math).
    constexpr int PF = FP8 ? DV3_PF_FP8 : DV3_PF;
    const long stride = DV3_WARPS * DV3_TILE;
    long t0 = start + warp * DV3_TILE;
    Dv3Tile<D, FP8> cur, ahead;
    if (t0 < end) dv3_load<D, FP8>(cur, t0, end, kRows, vRows, rowBytes, scaleOffset, kh, r, c);
    if (PF >= 2 && t0 + stride < end) dv3_load<D, FP8>(ahead, t0 + stride, end, kRows, vRows, rowBytes, scaleOffset, kh, r, c);
    for (; t0 < end; t0 += stride)
    {
        Dv3Tile<D, FP8> nxt;
        if (PF >= 1 && t0 + PF * stride < end) dv3_load<D, FP8>(nxt, t0 + PF * stride, end, kRows, vRows, rowBytes, scaleOffset, kh, r, c);

        // S for the two n-tiles: s[nt][0..1] row r, keys 8nt + 2c + {0, 1}; s[nt][2..3] row r + 8.
        float s[2][4];
#pragma unroll
        for (int nt = 0; nt < 2; nt++)
        {
            if constexpr (!FP8)
            {
                float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
                for (int j = 0; j < NG; j++)
                {
                    uint4 x = cur.k[nt][j];
                    mma_bf16(acc, qa[2 * j][0], qb[2 * j][0], qa[2 * j][1], qb[2 * j][1], x.x, x.y);
                    mma_bf16(acc, qa[2 * j + 1][0], qb[2 * j + 1][0], qa[2 * j + 1][1], qb[2 * j + 1][1], x.z, x.w);
                }
#pragma unroll
                for (int e = 0; e < 4; e++) s[nt][e] = acc[e] * sScale;
            }
            else
            {
#pragma unroll
                for (int e = 0; e < 4; e++) s[nt][e] = 0.f;
#pragma unroll
                for (int j = 0; j < NG; j++)
                {
                    // 8 codes: bytes 0..3 of .x are dims +0..3 (k-step 2j), of .y dims +4..7 (k-step 2j + 1).
                    unsigned cx = cur.k[nt][j].x, cy = cur.k[nt][j].y;
                    float acc[4] = {0.f, 0.f, 0.f, 0.f};
                    if constexpr (DV3_K_F16)
                    {
                        unsigned b0 = dv3_e4m3x2_f16(cx), b1 = dv3_e4m3x2_f16(cx >> 16);
                        unsigned b2 = dv3_e4m3x2_f16(cy), b3 = dv3_e4m3x2_f16(cy >> 16);
                        dv3_mma_f16(acc, qa[2 * j][0], qb[2 * j][0], qa[2 * j][1], qb[2 * j][1], b0, b1);
                        dv3_mma_f16(acc, qa[2 * j + 1][0], qb[2 * j + 1][0], qa[2 * j + 1][1], qb[2 * j + 1][1], b2, b3);
                    }
                    else
                    {
                        // Codes 0, 1 to byte positions 0, 2 (selector 0x0100), codes 2, 3 likewise (0x0302).
                        unsigned b0 = dv3_e4m3x2(dv3_prmt(cx, cx, 0x0100u)), b1 = dv3_e4m3x2(dv3_prmt(cx, cx, 0x0302u));
                        unsigned b2 = dv3_e4m3x2(dv3_prmt(cy, cy, 0x0100u)), b3 = dv3_e4m3x2(dv3_prmt(cy, cy, 0x0302u));
                        mma_bf16(acc, qa[2 * j][0], qb[2 * j][0], qa[2 * j][1], qb[2 * j][1], b0, b1);
                        mma_bf16(acc, qa[2 * j + 1][0], qb[2 * j + 1][0], qa[2 * j + 1][1], qb[2 * j + 1][1], b2, b3);
                    }
                    // Columns 2c, 2c + 1 of n-tile nt are keys vk[2nt], vk[2nt + 1].
                    float k0 = cur.kScale(nt, 0, j, c), k1 = cur.kScale(nt, 1, j, c);
                    s[nt][0] = fmaf(k0, acc[0], s[nt][0]);
                    s[nt][1] = fmaf(k1, acc[1], s[nt][1]);
                    s[nt][2] = fmaf(k0, acc[2], s[nt][2]);
                    s[nt][3] = fmaf(k1, acc[3], s[nt][3]);
                }
#pragma unroll
                for (int e = 0; e < 4; e++) s[nt][e] *= sScale;
            }
        }

        // Mask, then the online softmax of rows r (hh 0) and r + 8 (hh 1) over the tile; a row's 16 keys are spread
        // over its 4 lanes (c), so its max is two xor-shuffles away.
        float alpha[2];
#pragma unroll
        for (int hh = 0; hh < NH; hh++)
        {
            float mx = APB_NEG_INF;
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++)
                {
                    long t = t0 + 8 * nt + 2 * c + e;
                    float& x = s[nt][2 * hh + e];
                    if (t >= end || t >= lim[hh]) x = APB_NEG_INF;
                    mx = fmaxf(mx, x);
                }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            float mNew = fmaxf(m[hh], mx), mu = mNew == APB_NEG_INF ? 0.f : mNew;
            alpha[hh] = exp2f(m[hh] - mu);
            float sum = 0.f;
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++)
                {
                    float pe = exp2f(s[nt][2 * hh + e] - mu);
                    s[nt][2 * hh + e] = pe;
                    sum += pe;
                }
            l[hh] = l[hh] * alpha[hh] + sum;
            m[hh] = mNew;
        }

        // O^T's columns are pairs 2c, 2c + 1 (+ 8 hh): their rescale comes from the lanes of rows 2c and 2c + 1.
#pragma unroll
        for (int hh = 0; hh < NH; hh++)
        {
            float a0 = __shfl_sync(0xffffffffu, alpha[hh], 8 * c), a1 = __shfl_sync(0xffffffffu, alpha[hh], 8 * c + 4);
#pragma unroll
            for (int mt = 0; mt < KS; mt++) { o[mt][hh][0] *= a0; o[mt][hh][1] *= a1; o[mt][hh][2] *= a0; o[mt][hh][3] *= a1; }
        }

        // O^T += V^T P^T. P^T's B fragment for pair half hh: b0 = P[row][keys 2c, 2c + 1], b1 = keys 2c + 8, 2c + 9.
#pragma unroll
        for (int hh = 0; hh < NH; hh++)
        {
            if constexpr (!FP8)
            {
                unsigned p0 = pack_bf16(s[0][2 * hh], s[0][2 * hh + 1]), p1 = pack_bf16(s[1][2 * hh], s[1][2 * hh + 1]);
#pragma unroll
                for (int mt = 0; mt < KS; mt++)
                {
                    // Word mt of a key's slice holds dims D/8 r + 2mt (low half: row r) and + 1 (high: row r + 8).
                    unsigned a0 = dv3_prmt(cur.v[0][mt], cur.v[1][mt], 0x5410u), a1 = dv3_prmt(cur.v[0][mt], cur.v[1][mt], 0x7632u);
                    unsigned a2 = dv3_prmt(cur.v[2][mt], cur.v[3][mt], 0x5410u), a3 = dv3_prmt(cur.v[2][mt], cur.v[3][mt], 0x7632u);
                    mma_bf16(o[mt][hh], a0, a1, a2, a3, p0, p1);
                }
            }
            else
            {
                const float up = 1.2676506002282294e30f;   // 2^100
#pragma unroll
                for (int j = 0; j < NG; j++)
                {
                    // V's scale of group j folded into P: one B fragment per group.
                    unsigned p0 = pack_bf16(s[0][2 * hh] * (cur.vScale(0, 0, j, c) * up), s[0][2 * hh + 1] * (cur.vScale(0, 1, j, c) * up));
                    unsigned p1 = pack_bf16(s[1][2 * hh] * (cur.vScale(1, 0, j, c) * up), s[1][2 * hh + 1] * (cur.vScale(1, 1, j, c) * up));
#pragma unroll
                    for (int h2 = 0; h2 < 2; h2++)
                    {
                        // Byte b of a key's u32 is dim 32j + 4r + b: m-tile 2j + h2 takes bytes 2h2 (row r), 2h2 + 1 (row r + 8).
                        unsigned lo = h2 ? 0x0602u : 0x0400u, hi = h2 ? 0x0703u : 0x0501u;
                        unsigned a0 = dv3_e4m3x2(dv3_prmt(cur.v[0][j], cur.v[1][j], lo)), a1 = dv3_e4m3x2(dv3_prmt(cur.v[0][j], cur.v[1][j], hi));
                        unsigned a2 = dv3_e4m3x2(dv3_prmt(cur.v[2][j], cur.v[3][j], lo)), a3 = dv3_e4m3x2(dv3_prmt(cur.v[2][j], cur.v[3][j], hi));
                        mma_bf16(o[2 * j + h2][hh], a0, a1, a2, a3, p0, p1);
                    }
                }
            }
        }
        if (PF >= 2) { cur = ahead; ahead = nxt; }
        else if (PF == 1) cur = nxt;
        else if (t0 + stride < end) dv3_load<D, FP8>(cur, t0 + stride, end, kRows, vRows, rowBytes, scaleOffset, kh, r, c);
    }

    // The warps into one partial per pair: each lane's share of its rows' sums first (a row's keys are over 4 lanes).
#pragma unroll
    for (int hh = 0; hh < NH; hh++)
    {
        l[hh] += __shfl_xor_sync(0xffffffffu, l[hh], 1);
        l[hh] += __shfl_xor_sync(0xffffffffu, l[hh], 2);
        if (c == 0) { s_m[warp][r + 8 * hh] = m[hh]; s_l[warp][r + 8 * hh] = l[hh]; }
    }
    const float fix = FP8 ? 1048576.f : 1.f;   // 2^20: P's 2^100 against the codes' 2^-120
#pragma unroll
    for (int mt = 0; mt < KS; mt++)
#pragma unroll
        for (int hh = 0; hh < NH; hh++)
        {
            int d0 = dv3_dim<D, FP8>(mt, r, 0), d1 = dv3_dim<D, FP8>(mt, r, 1), p = 8 * hh + 2 * c;
            s_o[warp][p][d0] = o[mt][hh][0] * fix; s_o[warp][p + 1][d0] = o[mt][hh][1] * fix;
            s_o[warp][p][d1] = o[mt][hh][2] * fix; s_o[warp][p + 1][d1] = o[mt][hh][3] * fix;
        }
    __syncthreads();
    decode_block_partial<DV3_WARPS, PM, D, DV3_THREADS>(s_m, s_l, s_o, pairs, g, kh, heads, rowBase, split, splits, partO, partLse);
}

// One sequence (Tq rows, bottom-right causal or none): grid (splits, KV heads); the signature of decode.cu's version 2
// (kStride: elements of a bf16 row, bytes of an fp8 one).
#define DV3_SPLIT(D, FP8, HI, NAME) \
extern "C" __global__ void DV3_BOUNDS NAME(const bf16* q, const void* k, const void* v, float* partO, \
    float* partLse, int Tq, int Tk, int heads, int kvHeads, long qStride, long kStride, float scale, int causal, int keysPerSplit) \
{ pdl_enter(); \
  decode_mma<D, FP8, HI>(q, (const unsigned char*)k, (const unsigned char*)v, FP8 ? kStride : 2 * kStride, kvHeads * D, partO, partLse, \
      Tq, Tk, heads, kvHeads, qStride, scale, causal, keysPerSplit, 0); }

// B sequences, one query row each against its own cache (decode.cu's table: K and V addresses, then lengths): grid
// (splits, KV heads, B).
#define DV3_BATCH(D, FP8, HI, NAME) \
extern "C" __global__ void DV3_BOUNDS NAME(const bf16* q, const unsigned long long* __restrict__ kv, \
    const int* __restrict__ lens, float* partO, float* partLse, int heads, int kvHeads, long qStride, long kStride, float scale, \
    int keysPerSplit) \
{ pdl_enter(); int b = blockIdx.z; \
  decode_mma<D, FP8, HI>(q + (long)b * qStride, (const unsigned char*)kv[2 * b], (const unsigned char*)kv[2 * b + 1], \
      FP8 ? kStride : 2 * kStride, kvHeads * D, partO, partLse, 1, lens[b], heads, kvHeads, qStride, scale, 0, keysPerSplit, (long)b * heads); }

#define DV3_ALL(D, P, HI) \
  DV3_SPLIT(D, false, HI, apb_decode3_split_d##D##_p##P) DV3_BATCH(D, false, HI, apb_decode3_batch_d##D##_p##P) \
  DV3_SPLIT(D, true, HI, apb_decode3_split_d##D##_p##P##_fp8) DV3_BATCH(D, true, HI, apb_decode3_batch_d##D##_p##P##_fp8)
DV3_ALL(64, 8, false) DV3_ALL(64, 16, true)
DV3_ALL(128, 8, false) DV3_ALL(128, 16, true)
