// Matrix-vector products for a decode step: y[m, n] = sum_k x[m, k] W[n, k] (+ bias[n]) for a few rows m (M <= 4), bf16
// in and out, fp32 accumulation. A step of one sequence reads every weight once and does 2 FLOPs per weight it reads,
// so it is bound by HBM, not by tensor cores: what matters is keeping enough loads in flight to fill the bus.
//   - One warp per output row n. Each lane reads 16 bytes (8 weights) of W's row at a time, 16 of them before any
//     math (8 KB in flight per warp; version 1 had 8), with ld.global.nc.L1::no_allocate: the weights are read once and must not
//     push x out of L1, which every warp of the SM re-reads.
//   - x is read straight from global memory; it is at most 4 x 28 KB and stays in L1/L2.
//   - The lanes' partial sums meet in a butterfly of shuffles; lane m writes row m's output.
// Three weights can share a launch (q, k and v of one layer read the same x): rows [0, a.n) are a's, the next b.n
// are b's, then c's. apb_gemv_gated_mM reads the gate and up rows of the same n and writes silu(g) * u, g and u each
// rounded to bf16 first, as the unfused Linear, Linear, SiluMul chain stores them (docs/kernels/gemv.md).
#include "bf16.cuh"

// Knobs for bench/gpu/kernel_variants.sh (APB_KERNEL_DEFINES), measured in docs/kernels/gemv.md:
//   GEMV_U1, GEMV_U2: 16-byte loads per lane per batch for one weight row (gate/up: two rows) per warp.
//   GEMV_MIN_BLOCKS: __launch_bounds__'s minimum of resident blocks per SM (caps the registers); unset: no cap.
#ifndef GEMV_U1
#define GEMV_U1 16
#endif
#ifndef GEMV_U2
#define GEMV_U2 8
#endif
#ifdef GEMV_MIN_BLOCKS
#define GEMV_BOUNDS __launch_bounds__(128, GEMV_MIN_BLOCKS)
#else
#define GEMV_BOUNDS __launch_bounds__(128)
#endif

struct GemvPart
{
    const bf16* w;    // [n, k] row-major
    const bf16* bias; // [n] or null
    bf16* y;          // [M, n] row-major
    int n;
    int pad;
};

__device__ __forceinline__ uint4 ld_stream(const void* p)
{
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

// sum of the 8 products of two packed bf16 x 8 vectors, added to acc.
__device__ __forceinline__ float dot8(uint4 a, uint4 b, float acc)
{
    const unsigned* pa = (const unsigned*)&a;
    const unsigned* pb = (const unsigned*)&b;
#pragma unroll
    for (int i = 0; i < 4; i++)
    {
        acc = fmaf(bf_lo(pa[i]), bf_lo(pb[i]), acc);
        acc = fmaf(bf_hi(pa[i]), bf_hi(pb[i]), acc);
    }
    return acc;
}

// One batch of a lane's chunks c, c + 32, ..., c + 32 (U - 1) of R weight rows (the gate and up rows of a feature, or
// one row): all R x U loads issued (load_batch) before any math (dot_batch: acc[r][m] += w_r . x_m over them).
template <int U, int R>
__device__ __forceinline__ void load_batch(const uint4* const (&w)[R], int c, uint4 (&wv)[R][U])
{
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int u = 0; u < U; u++) wv[r][u] = ld_stream(w[r] + c + 32 * u);
}

template <int U, int R, int M>
__device__ __forceinline__ void dot_batch(const uint4 (&wv)[R][U], const uint4* __restrict__ x, int chunks, int c, float (&acc)[R][M])
{
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
        for (int m = 0; m < M; m++)
        {
            uint4 xv = x[(long)m * chunks + c + 32 * u];
#pragma unroll
            for (int r = 0; r < R; r++) acc[r][m] = dot8(wv[r][u], xv, acc[r][m]);
        }
}

template <int U, int R, int M>
__device__ __forceinline__ void batch(const uint4* const (&w)[R], const uint4* __restrict__ x, int chunks, int c, float (&acc)[R][M])
{
    uint4 wv[R][U];
    load_batch<U, R>(w, c, wv);
    dot_batch<U, R, M>(wv, x, chunks, c, acc);
}

// acc[r][m] += W_r's row . x's row m over this lane's chunks (lane, lane + 32, ...): batches of 16 loads per row
// while they last (a 4096-wide row is exactly one, 8 KB in flight per warp), then 8, 4 and single ones, so the tail of
// a row never waits on one load at a time. The gated kernel's two rows go 8 at a time: 16 loads in flight as well.
// The first batch's weights are requested before pdl_wait(): under programmatic launch they stream in while the
// kernel before (which writes x) finishes. Weights are never written by a kernel, so reading them early is safe.
template <int R, int M>
__device__ __forceinline__ void row_dots(const uint4* const (&w)[R], const uint4* __restrict__ x, int chunks, int lane, float (&acc)[R][M])
{
    constexpr int U = R == 1 ? GEMV_U1 : GEMV_U2;
    int c = lane;
    if (c + 32 * (U - 1) < chunks)
    {
        uint4 wv[R][U];
        load_batch<U, R>(w, c, wv);
        pdl_wait();
        dot_batch<U, R, M>(wv, x, chunks, c, acc);
        c += 32 * U;
    }
    else pdl_wait();
    for (; c + 32 * (U - 1) < chunks; c += 32 * U) batch<U, R, M>(w, x, chunks, c, acc);
    if (U > 8 && c + 32 * 7 < chunks) { batch<8, R, M>(w, x, chunks, c, acc); c += 32 * 8; }
    if (c + 32 * 3 < chunks) { batch<4, R, M>(w, x, chunks, c, acc); c += 32 * 4; }
    for (; c < chunks; c += 32) batch<1, R, M>(w, x, chunks, c, acc);
}

template <int M>
__device__ __forceinline__ void warp_sum(float (&acc)[M])
{
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], o);
}

// The part that global row r falls in, and r made local to it; false past the last part's rows.
__device__ __forceinline__ bool find_part(const GemvPart& a, const GemvPart& b, const GemvPart& c, int& r, GemvPart& p)
{
    if (r < a.n) { p = a; return true; }
    r -= a.n;
    if (r < b.n) { p = b; return true; }
    r -= b.n;
    if (r < c.n) { p = c; return true; }
    return false;
}

template <int M>
__device__ __forceinline__ void gemv(const bf16* __restrict__ x, int k, GemvPart a, GemvPart b, GemvPart c)
{
    int lane = threadIdx.x & 31;
    int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    GemvPart p;
    pdl_launch_dependents();
    if (!find_part(a, b, c, r, p)) { pdl_wait(); return; }
    int chunks = k >> 3;
    float acc[1][M];
#pragma unroll
    for (int m = 0; m < M; m++) acc[0][m] = 0.f;
    const uint4* const w[1] = {(const uint4*)(p.w + (long)r * k)};
    row_dots<1, M>(w, (const uint4*)x, chunks, lane, acc);
    warp_sum<M>(acc[0]);
    float bias = p.bias ? bf2f(p.bias[r]) : 0.f;
#pragma unroll
    for (int m = 0; m < M; m++)
        if (lane == m) p.y[(long)m * p.n + r] = f2bf(acc[0][m] + bias);
}

// out[m, n] = silu(g) * u with g = x[m] . gate[n] (+ gate_bias[n]) and u = x[m] . up[n] (+ up_bias[n]), each rounded
// to bf16 before the product (what Linear stores), and the product computed as apb_silu_mul does.
template <int M>
__device__ __forceinline__ void gemv_gated(const bf16* __restrict__ x, int k, GemvPart gate, GemvPart up)
{
    int lane = threadIdx.x & 31;
    int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    pdl_launch_dependents();
    if (r >= gate.n) { pdl_wait(); return; }
    int chunks = k >> 3;
    float acc[2][M];
#pragma unroll
    for (int m = 0; m < M; m++) { acc[0][m] = 0.f; acc[1][m] = 0.f; }
    const uint4* const w[2] = {(const uint4*)(gate.w + (long)r * k), (const uint4*)(up.w + (long)r * k)};
    row_dots<2, M>(w, (const uint4*)x, chunks, lane, acc);
    float (&g)[M] = acc[0];
    float (&u)[M] = acc[1];
    warp_sum<M>(g);
    warp_sum<M>(u);
    float gb = gate.bias ? bf2f(gate.bias[r]) : 0.f, ub = up.bias ? bf2f(up.bias[r]) : 0.f;
#pragma unroll
    for (int m = 0; m < M; m++)
        if (lane == m)
        {
            float gv = bf2f(f2bf(g[m] + gb)), uv = bf2f(f2bf(u[m] + ub));
            gate.y[(long)m * gate.n + r] = f2bf(gv / (1.f + expf(-gv)) * uv);
        }
}

#define APB_GEMV(M)                                                                                                   \
    extern "C" __global__ void GEMV_BOUNDS apb_gemv_m##M(const bf16* x, int k, GemvPart a, GemvPart b, GemvPart c) \
    {                                                                                                                 \
        gemv<M>(x, k, a, b, c);                                                                                       \
    }                                                                                                                 \
    extern "C" __global__ void GEMV_BOUNDS apb_gemv_gated_m##M(const bf16* x, int k, GemvPart gate, GemvPart up) \
    {                                                                                                                 \
        gemv_gated<M>(x, k, gate, up);                                                                                \
    }

APB_GEMV(1)
APB_GEMV(2)
APB_GEMV(3)
APB_GEMV(4)
