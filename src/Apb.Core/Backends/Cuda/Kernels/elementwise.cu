// Elementwise and row-wise kernels of the CUDA backend: conversions, embedding, RMSNorm, residual add (alone and fused
// with the RMSNorm after it), SiLU, RoPE, copies and the LSE merge. Activations are bf16 (stored as raw 16-bit patterns
// so that no CUDA header is needed and the file compiles with NVRTC alone); every reduction accumulates in fp32.
// Index arithmetic uses long where a product of two sizes can pass 2^31 (a 128K x 16K tensor has 2^31 elements).

#include "bf16.cuh"
#include "fp8.cuh"

// IEEE half -> float by bit manipulation (subnormals, inf and NaN included), so no cuda_fp16.h is needed.
__device__ __forceinline__ float h2f(unsigned short h)
{
    unsigned sign = ((unsigned)h & 0x8000u) << 16, exp = ((unsigned)h >> 10) & 0x1fu, man = (unsigned)h & 0x3ffu;
    if (exp == 0x1f) return __uint_as_float(sign | 0x7f800000u | (man << 13));
    if (exp == 0)
    {
        if (man == 0) return __uint_as_float(sign);
        float f = (float)man * 5.9604644775390625e-8f; // man x 2^-24
        return sign ? -f : f;
    }
    return __uint_as_float(sign | ((exp + 112u) << 23) | (man << 13));
}

extern "C" __global__ void apb_convert_f32_bf16(const float* __restrict__ src, bf16* __restrict__ dst, long n)
{
    pdl_enter();
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) dst[i] = f2bf(src[i]);
}

extern "C" __global__ void apb_convert_f16_bf16(const unsigned short* __restrict__ src, bf16* __restrict__ dst, long n)
{
    pdl_enter();
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) dst[i] = f2bf(h2f(src[i]));
}

// One block per token, 16 bytes at a time (rows a multiple of 8 wide, 16-byte aligned: the host checks).
extern "C" __global__ void apb_embed_v(const int* __restrict__ ids, const uint4* __restrict__ table, uint4* __restrict__ out, int chunks)
{
    pdl_enter();
    const uint4* src = table + (long)ids[blockIdx.x] * chunks;
    uint4* dst = out + (long)blockIdx.x * chunks;
    for (int c = threadIdx.x; c < chunks; c += blockDim.x) dst[c] = src[c];
}

// One block per token: ids were checked against the vocabulary on the host.
extern "C" __global__ void apb_embed(const int* __restrict__ ids, const bf16* __restrict__ table, bf16* __restrict__ out, int cols)
{
    pdl_enter();
    const bf16* src = table + (long)ids[blockIdx.x] * cols;
    bf16* dst = out + (long)blockIdx.x * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = src[c];
}

// One block per row (blockDim a multiple of 32). HF: x * rsqrt(mean(x^2) + eps) * weight, the mean in fp32.
// out may be x (Qwen3's q/k norms run in place on [T x heads, head_dim] views), so neither is __restrict__: block_reduce's
// barrier orders every read of the first loop before any write, and in the second loop each thread reads a column
// before it writes that same column.
extern "C" __global__ void apb_rms_norm(const bf16* x, const bf16* __restrict__ w, bf16* out, int cols, float eps)
{
    pdl_enter();
    __shared__ float scratch[32];
    const bf16* row = x + (long)blockIdx.x * cols;
    float ss = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) { float f = bf2f(row[c]); ss += f * f; }
    ss = block_reduce<false>(ss, scratch);
    float inv = rsqrtf(ss / (float)cols + eps);
    bf16* dst = out + (long)blockIdx.x * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = f2bf(bf2f(row[c]) * inv * bf2f(w[c]));
}

// The residual add and the RMSNorm after it, one block per row: x += y (rounded to bf16, as the residual stream is
// stored), then out = x * rsqrt(mean(x^2) + eps) * w computed from the rounded sum, so the result is bit-for-bit what
// apb_add followed by apb_rms_norm give. Each thread re-reads in the second loop only the columns it wrote in the first.
extern "C" __global__ void apb_add_rms_norm(bf16* __restrict__ x, const bf16* __restrict__ y, const bf16* __restrict__ w,
                                            bf16* __restrict__ out, int cols, float eps)
{
    pdl_enter();
    __shared__ float scratch[32];
    bf16* row = x + (long)blockIdx.x * cols;
    const bf16* add = y + (long)blockIdx.x * cols;
    float ss = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
    {
        bf16 s = f2bf(bf2f(row[c]) + bf2f(add[c]));
        row[c] = s;
        float f = bf2f(s);
        ss += f * f;
    }
    ss = block_reduce<false>(ss, scratch);
    float inv = rsqrtf(ss / (float)cols + eps);
    bf16* dst = out + (long)blockIdx.x * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = f2bf(bf2f(row[c]) * inv * bf2f(w[c]));
}

// The same two row norms for rows a multiple of 8 wide and at most 8 x CPT x 256 = 8192 (16-byte aligned; the host
// checks): each thread holds its CPT 16-byte chunks (chunk t, t + blockDim, ...) in registers, so a row is read once
// with all of its loads in flight together and written after one block reduction. The loops above read two bytes at a
// time, one round trip after another: 15.6 us per 4096-wide row on an H200, 63 rows per decode step of an 8B model
// (docs/kernels/decode-step.md). The weight's chunks are requested before pdl_wait (weights are never written). Both
// kernels sum a row's squares in the same order, so apb_add_rms_norm_v stays bit for bit apb_add + apb_rms_norm_v.

// x [+ y, rounded to bf16 and stored back into x] normed into out; x may be out when there is no y.
template <int CPT, bool ADD>
__device__ __forceinline__ void norm_row_v(bf16* x, const bf16* __restrict__ y, const bf16* __restrict__ w, bf16* out, int cols, float eps)
{
    __shared__ float scratch[32];
    int chunks = cols >> 3;
    long base = (long)blockIdx.x * cols;
    uint4 v[CPT], wv[CPT];
    pdl_launch_dependents();
#pragma unroll
    for (int j = 0; j < CPT; j++)
    {
        int c = threadIdx.x + j * blockDim.x;
        if (c < chunks) wv[j] = ((const uint4*)w)[c];
    }
    pdl_wait();
#pragma unroll
    for (int j = 0; j < CPT; j++)
    {
        int c = threadIdx.x + j * blockDim.x;
        if (c < chunks) v[j] = ((const uint4*)(x + base))[c];
    }
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < CPT; j++)
    {
        int c = threadIdx.x + j * blockDim.x;
        if (c >= chunks) continue;
        unsigned* e = (unsigned*)&v[j];
        if (ADD)
        {
            uint4 a = ((const uint4*)(y + base))[c];
            const unsigned* ae = (const unsigned*)&a;
#pragma unroll
            for (int i = 0; i < 4; i++)
                e[i] = bf_pack(f2bf(bf_lo(e[i]) + bf_lo(ae[i])), f2bf(bf_hi(e[i]) + bf_hi(ae[i])));
            ((uint4*)(x + base))[c] = v[j];
        }
#pragma unroll
        for (int i = 0; i < 4; i++)
        {
            float a = bf_lo(e[i]), b = bf_hi(e[i]);
            ss += a * a;
            ss += b * b;
        }
    }
    ss = block_reduce<false>(ss, scratch);
    float inv = rsqrtf(ss / (float)cols + eps);
#pragma unroll
    for (int j = 0; j < CPT; j++)
    {
        int c = threadIdx.x + j * blockDim.x;
        if (c >= chunks) continue;
        const unsigned* e = (const unsigned*)&v[j];
        const unsigned* we = (const unsigned*)&wv[j];
        uint4 r;
        unsigned* re = (unsigned*)&r;
#pragma unroll
        for (int i = 0; i < 4; i++)
            re[i] = bf_pack(f2bf(bf_lo(e[i]) * inv * bf_lo(we[i])), f2bf(bf_hi(e[i]) * inv * bf_hi(we[i])));
        ((uint4*)(out + base))[c] = r;
    }
}

#define APB_NORM_V(CPT)                                                                                                \
    extern "C" __global__ void __launch_bounds__(256) apb_rms_norm_v##CPT(const bf16* x, const bf16* __restrict__ w,   \
                                                                         bf16* out, int cols, float eps)              \
    {                                                                                                                 \
        norm_row_v<CPT, false>((bf16*)x, nullptr, w, out, cols, eps);                                                 \
    }                                                                                                                 \
    extern "C" __global__ void __launch_bounds__(256) apb_add_rms_norm_v##CPT(bf16* __restrict__ x, const bf16* __restrict__ y, \
                                                                             const bf16* __restrict__ w, bf16* __restrict__ out, \
                                                                             int cols, float eps)                     \
    {                                                                                                                 \
        norm_row_v<CPT, true>(x, y, w, out, cols, eps);                                                               \
    }
APB_NORM_V(1)
APB_NORM_V(2)
APB_NORM_V(4)

extern "C" __global__ void apb_add(bf16* __restrict__ x, const bf16* __restrict__ y, long n)
{
    pdl_enter();
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) x[i] = f2bf(bf2f(x[i]) + bf2f(y[i]));
}

__device__ __forceinline__ float silu_mul1(float g, float u) { return g / (1.f + expf(-g)) * u; }

// Two bf16 pairs (gate, up) to silu(gate) x up, packed by one cvt (f2bf's rounding for every non-NaN value).
__device__ __forceinline__ unsigned silu_mul2(unsigned g, unsigned u)
{
    return pack_bf16(silu_mul1(bf_lo(g), bf_lo(u)), silu_mul1(bf_hi(g), bf_hi(u)));
}

// output may alias gate (the model writes silu(gate) * up back into gate): each element is read before it is written.
extern "C" __global__ void apb_silu_mul(const bf16* gate, const bf16* up, bf16* out, long n)
{
    pdl_enter();
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = f2bf(silu_mul1(bf2f(gate[i]), bf2f(up[i])));
}

// apb_silu_mul 8 elements at a time, with 16-byte loads and stores (the host checks that the three addresses are
// 16-byte aligned); the last n % 8 elements one each by the grid's first threads. A prefill's FFN calls it on
// [tokens, ffn]: the scalar kernel moved ~1.5 TB/s there (59 ms of a 32K prefill of Llama-3.1-8B, 249 ms at 128K:
// bench/results/prefill-split-20261204). out may alias gate as above: a thread reads a chunk before it writes it.
extern "C" __global__ void apb_silu_mul_v(const bf16* gate, const bf16* up, bf16* out, long n)
{
    pdl_enter();
    long chunks = n >> 3, first = blockIdx.x * (long)blockDim.x + threadIdx.x;
    for (long c = first; c < chunks; c += (long)gridDim.x * blockDim.x)
    {
        uint4 g = ((const uint4*)gate)[c], u = ((const uint4*)up)[c], o;
        o.x = silu_mul2(g.x, u.x);
        o.y = silu_mul2(g.y, u.y);
        o.z = silu_mul2(g.z, u.z);
        o.w = silu_mul2(g.w, u.w);
        ((uint4*)out)[c] = o;
    }
    long i = (chunks << 3) + first;
    if (i < n) out[i] = f2bf(silu_mul1(bf2f(gate[i]), bf2f(up[i])));
}

extern "C" __global__ void apb_silu(bf16* x, long n)
{
    pdl_enter();
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    {
        float g = bf2f(x[i]);
        x[i] = f2bf(g / (1.f + expf(-g)));
    }
}

// The scaled cos and sin of a position's angle for one pair. The angle is fp32(position) x fp32(inv_freq) rounded to
// fp32 (__fmul_rn: never contracted), as Hugging Face computes it; cos/sin are the precise library functions, not the
// fast intrinsics (large angles at 128K). scale is HF's attention_scaling (YaRN's attention factor, else 1): cos and
// sin are multiplied by it in fp32 first.
__device__ __forceinline__ void rope_cos_sin(float pos, float invFreq, float scale, float& c, float& s)
{
    float angle = __fmul_rn(pos, invFreq);
    sincosf(angle, &s, &c);
    s = __fmul_rn(s, scale);
    c = __fmul_rn(c, scale);
}

// The pair (a, b) rotated by the angle whose scaled cos and sin are (c, s). Every rope kernel rotates through these two,
// with the fused multiply-add spelled out so no kernel's compilation contracts them differently: they agree bit for
// bit (the GPU tests compare apb_rope_append and apb_rope_append_rows with apb_rope).
__device__ __forceinline__ float rope_lo(float a, float b, float c, float s) { return __fmaf_rn(a, c, -__fmul_rn(b, s)); }
__device__ __forceinline__ float rope_hi(float a, float b, float c, float s) { return __fmaf_rn(b, c, __fmul_rn(a, s)); }

// One pair (i, i + half) of a head's vector v rotated by pos x invFreq[i], in place; the pair is also returned (lo at i,
// hi at i + half) for a copy elsewhere.
__device__ __forceinline__ void rope_pair(bf16* v, int i, int half, float pos, const float* __restrict__ invFreq, float scale,
                                          bf16& lo, bf16& hi)
{
    float s, c;
    rope_cos_sin(pos, invFreq[i], scale, c, s);
    float a = bf2f(v[i]), b = bf2f(v[i + half]);
    lo = f2bf(rope_lo(a, b, c, s));
    hi = f2bf(rope_hi(a, b, c, s));
    v[i] = lo;
    v[i + half] = hi;
}

// One block per token: every head's pairs rotated (rope_pair).
extern "C" __global__ void apb_rope(bf16* x, const int* __restrict__ positions, const float* __restrict__ invFreq, int heads, int d,
                                    float scale)
{
    pdl_enter();
    int half = d >> 1;
    float pos = (float)positions[blockIdx.x];
    bf16* row = x + (long)blockIdx.x * heads * d;
    for (int idx = threadIdx.x; idx < heads * half; idx += blockDim.x)
    {
        int h = idx / half, i = idx - h * half;
        bf16 lo, hi;
        rope_pair(row + h * d, i, half, pos, invFreq, scale, lo, hi);
    }
}

// FullAttention's step before attending, one block per (token, head): grid (tokens, heads + kvHeads), at least d / 2
// threads, one pair each. q rotated in place; k rotated in place and into kDst's row; v copied into vDst's row
// (kDst/vDst: the cache rows the tokens take). The same rotation as apb_rope (rope_pair), so the result is bit for bit
// apb_rope on q, apb_rope on k and two row copies, in one launch instead of four. A block per token with a loop over
// its 40 heads' pairs took 13.8 us for a decode step's one token; here every pair is one thread's one round trip.
// A thread's rotation in a rope + append launch (grid (tokens, heads + kvHeads), a thread per rotated pair i): a query
// head's pair is rotated in place and the thread is done (false); a KV head's key pair is rotated in place and given
// back in lo, hi, with at = the head's first element in k and v (true). Threads past d / 2 have no pair (false).
__device__ __forceinline__ bool rope_append_pair(bf16* q, bf16* k, const int* __restrict__ positions, const float* __restrict__ invFreq,
                                                 int heads, int kvHeads, int d, float scale, long& at, bf16& lo, bf16& hi)
{
    int half = d >> 1, h = blockIdx.y, i = threadIdx.x;
    if (i >= half) return false;
    float pos = (float)positions[blockIdx.x];
    if (h < heads)
    {
        rope_pair(q + ((long)blockIdx.x * heads + h) * d, i, half, pos, invFreq, scale, lo, hi);
        return false;
    }
    at = ((long)blockIdx.x * kvHeads + (h - heads)) * d;
    rope_pair(k + at, i, half, pos, invFreq, scale, lo, hi);
    return true;
}

extern "C" __global__ void apb_rope_append(bf16* q, bf16* k, const bf16* __restrict__ v, bf16* __restrict__ kDst, bf16* __restrict__ vDst,
                                           const int* __restrict__ positions, const float* __restrict__ invFreq, int heads,
                                           int kvHeads, int d, float scale)
{
    pdl_enter();
    long at;
    bf16 lo, hi;
    if (!rope_append_pair(q, k, positions, invFreq, heads, kvHeads, d, scale, at, lo, hi)) return;
    int half = d >> 1, i = threadIdx.x;
    kDst[at + i] = lo;
    kDst[at + i + half] = hi;
    vDst[at + i] = v[at + i];
    vDst[at + i + half] = v[at + i + half];
}

// apb_rope_append for many tokens (a prefill): one block per token. The token's cos and sin are computed once per pair
// into shared memory (the kernel above computes them once per pair and head: 40 times for Llama-3.1-8B), then each
// thread rotates 8 pairs of one head with 16-byte loads and stores (the host checks d % 16 == 0 and 16-byte aligned
// rows; d <= 256). The kernel above, a block per (token, head), took 51 ms of a 32K prefill of Llama-3.1-8B and 213 ms
// at 128K, ~0.5 TB/s (bench/results/prefill-split-20261204); it stays for a decode step's few tokens, where its
// many small blocks are the lower latency.
// rope_rotate2: two adjacent pairs, a's and b's bf16 words (dims i, i + 1 and i + half, i + half + 1), rotated by
// c[0..1], s[0..1]: the lo (hi = false) or the hi (hi = true) word of the result.
__device__ __forceinline__ unsigned rope_rotate2(unsigned a, unsigned b, const float* c, const float* s, bool hi)
{
    float a0 = bf_lo(a), a1 = bf_hi(a), b0 = bf_lo(b), b1 = bf_hi(b);
    return hi ? bf_pack(f2bf(rope_hi(a0, b0, c[0], s[0])), f2bf(rope_hi(a1, b1, c[1], s[1])))
              : bf_pack(f2bf(rope_lo(a0, b0, c[0], s[0])), f2bf(rope_lo(a1, b1, c[1], s[1])));
}

// APB_STUDY_FP8_QKV, 1 for an accuracy study of fp8 prefill attention (docs/notes/fp8-attention.md), never for
// serving: the rows kernel below rounds each rotated q and k head and each v head through e4m3 with one scale per
// (token, head) (its largest magnitude to 448) and back to bf16, in place and into the cache, as an e4m3 attention
// kernel's inputs would be. attention_hopper.cu's HOP_STUDY_P_E4M3 rounds P the same way. 0 (the default) leaves them.
#ifndef APB_STUDY_FP8_QKV
#define APB_STUDY_FP8_QKV 0
#endif
#if APB_STUDY_FP8_QKV
// The 8 bf16 of w through e4m3 at scale sc and back (e4m3 values are bf16 values: the way back is exact).
__device__ __forceinline__ uint4 study_fp8_round8(uint4 w, float sc)
{
    unsigned* u = (unsigned*)&w;
#pragma unroll
    for (int i = 0; i < 4; i++)
    {
        float lo, hi;
        unsigned codes = (unsigned)f2e4m3(__fdiv_rn(bf_lo(u[i]), sc)) | ((unsigned)f2e4m3(__fdiv_rn(bf_hi(u[i]), sc)) << 8);
        e4m3x2_to_f32(codes, lo, hi);
        u[i] = bf_pack(f2bf(lo * sc), f2bf(hi * sc));
    }
    return w;
}

// The largest magnitude of a head's d values over the `lanes` lanes that hold them (an aligned group of the warp).
__device__ __forceinline__ float study_head_amax(uint4 a, uint4 b, int lanes)
{
    const unsigned* x = (const unsigned*)&a;
    const unsigned* y = (const unsigned*)&b;
    float m = 0.f;
#pragma unroll
    for (int i = 0; i < 4; i++)
        m = fmaxf(m, fmaxf(fmaxf(fabsf(bf_lo(x[i])), fabsf(bf_hi(x[i]))), fmaxf(fabsf(bf_lo(y[i])), fabsf(bf_hi(y[i])))));
    const unsigned active = __activemask();
    for (int o = 1; o < lanes; o <<= 1) m = fmaxf(m, __shfl_xor_sync(active, m, o));
    return m;
}
#endif

extern "C" __global__ void __launch_bounds__(256) apb_rope_append_rows(bf16* q, bf16* k, const bf16* __restrict__ v,
                                                                       bf16* __restrict__ kDst, bf16* __restrict__ vDst,
                                                                       const int* __restrict__ positions,
                                                                       const float* __restrict__ invFreq, int heads,
                                                                       int kvHeads, int d, float scale)
{
    pdl_enter();
    __shared__ float cs[128], sn[128];
    int half = d >> 1;
    float pos = (float)positions[blockIdx.x];
    for (int i = threadIdx.x; i < half; i += blockDim.x) rope_cos_sin(pos, invFreq[i], scale, cs[i], sn[i]);
    __syncthreads();
    int chunks = half >> 3; // 8 pairs per thread and head
    for (int t = threadIdx.x; t < (heads + kvHeads) * chunks; t += blockDim.x)
    {
        int h = t / chunks, j = (t - h * chunks) << 3;
        bool isKey = h >= heads;
        long at = isKey ? ((long)blockIdx.x * kvHeads + (h - heads)) * d : ((long)blockIdx.x * heads + h) * d;
        bf16* row = (isKey ? k : q) + at;
        uint4 a = *(const uint4*)(row + j), b = *(const uint4*)(row + j + half), lo, hi;
        lo.x = rope_rotate2(a.x, b.x, cs + j, sn + j, false);     hi.x = rope_rotate2(a.x, b.x, cs + j, sn + j, true);
        lo.y = rope_rotate2(a.y, b.y, cs + j + 2, sn + j + 2, false); hi.y = rope_rotate2(a.y, b.y, cs + j + 2, sn + j + 2, true);
        lo.z = rope_rotate2(a.z, b.z, cs + j + 4, sn + j + 4, false); hi.z = rope_rotate2(a.z, b.z, cs + j + 4, sn + j + 4, true);
        lo.w = rope_rotate2(a.w, b.w, cs + j + 6, sn + j + 6, false); hi.w = rope_rotate2(a.w, b.w, cs + j + 6, sn + j + 6, true);
#if APB_STUDY_FP8_QKV
        uint4 va, vb;   // a key head's v, rounded: into the cache below, and in place (the prefill attends to v there)
        {
            // A head's chunks are consecutive t, so consecutive lanes of one warp (chunks divides the block and 32).
            const float sc = fp8_scale(study_head_amax(lo, hi, chunks));
            lo = study_fp8_round8(lo, sc);
            hi = study_fp8_round8(hi, sc);
        }
        if (isKey)
        {
            bf16* vr = (bf16*)v + at;   // read once, before the write: v is read through the non-coherent path
            va = *(const uint4*)(vr + j); vb = *(const uint4*)(vr + j + half);
            const float sv = fp8_scale(study_head_amax(va, vb, chunks));
            va = study_fp8_round8(va, sv); vb = study_fp8_round8(vb, sv);
            *(uint4*)(vr + j) = va;
            *(uint4*)(vr + j + half) = vb;
        }
#endif
        *(uint4*)(row + j) = lo;
        *(uint4*)(row + j + half) = hi;
        if (!isKey) continue;
        *(uint4*)(kDst + at + j) = lo;
        *(uint4*)(kDst + at + j + half) = hi;
#if APB_STUDY_FP8_QKV
        *(uint4*)(vDst + at + j) = va;
        *(uint4*)(vDst + at + j + half) = vb;
#else
        *(uint4*)(vDst + at + j) = *(const uint4*)(v + at + j);
        *(uint4*)(vDst + at + j + half) = *(const uint4*)(v + at + j + half);
#endif
    }
}

// An fp8 cache row (--kv-cache-dtype fp8, fp8.cuh): cols E4M3 codes, then cols / 32 fp32 scales, rowBytes = cols x 9 / 8.
// A rotated pair (a, b) of one KV head's row, dims i and i + half, stored with a scale per 32 values: a warp's a's are
// dims 32w .. 32w + 31 of the head (one group) and its b's are half + 32w .. (another), so each group's largest
// magnitude is a warp reduction. Lane 0 of the warp writes the two scales.
__device__ __forceinline__ void fp8_store_pair(unsigned char* __restrict__ codes, float* __restrict__ scales, int i, int half,
                                               float a, float b)
{
    float sa = fp8_scale(warp_max(fabsf(a))), sb = fp8_scale(warp_max(fabsf(b)));
    codes[i] = f2e4m3(__fdiv_rn(a, sa));
    codes[i + half] = f2e4m3(__fdiv_rn(b, sb));
    if ((i & 31) == 0)
    {
        scales[i / APB_FP8_GROUP] = sa;
        scales[(i + half) / APB_FP8_GROUP] = sb;
    }
}

// apb_rope_append for an fp8 cache: q and k rotated in place as there; each KV head's rotated key and its value stored
// as codes and scales in rows of rowBytes (kDst, vDst: the first row to write). The codes are those of the bf16
// rotated key (what apb_rope_append would have stored), so a test compares them with Fp8E4M3 on the host bit for bit.
// One block per (token, head), a thread per rotated pair; d / 2 must be a multiple of 32 (head dims 64 and 128: the
// host checks), so every thread of a warp is live for its shuffles.
extern "C" __global__ void apb_rope_append_fp8(bf16* q, bf16* k, const bf16* __restrict__ v, unsigned char* __restrict__ kDst,
                                               unsigned char* __restrict__ vDst, long rowBytes, const int* __restrict__ positions,
                                               const float* __restrict__ invFreq, int heads, int kvHeads, int d, float scale)
{
    pdl_enter();
    long at;
    bf16 lo, hi;
    if (!rope_append_pair(q, k, positions, invFreq, heads, kvHeads, d, scale, at, lo, hi)) return;
    int half = d >> 1, i = threadIdx.x, kh = blockIdx.y - heads, cols = kvHeads * d;
    long row = (long)blockIdx.x * rowBytes;
    long code = row + (long)kh * d, sc = row + cols + (long)kh * (d / APB_FP8_GROUP) * 4;
    fp8_store_pair(kDst + code, (float*)(kDst + sc), i, half, bf2f(lo), bf2f(hi));
    fp8_store_pair(vDst + code, (float*)(vDst + sc), i, half, bf2f(v[at + i]), bf2f(v[at + i + half]));
}

// Group g of one bf16 row (32 values, a value per lane of the calling warp) into an fp8 row: its codes, and its scale
// after the row's cols codes.
__device__ __forceinline__ void fp8_quantize_group(const bf16* __restrict__ src, unsigned char* __restrict__ row, int cols, int g, int lane)
{
    int c = g * APB_FP8_GROUP + lane;
    float x = bf2f(src[c]);
    float s = fp8_scale(warp_max(fabsf(x)));
    row[c] = f2e4m3(__fdiv_rn(x, s));
    if (lane == 0) ((float*)(row + cols))[g] = s;
}

// bf16 rows [rows][cols] (row stride srcStride) into fp8 rows of rowBytes: one warp per group of 32 values, a value per
// lane. Grid: (ceil(cols / 32 / warps per block), rows).
extern "C" __global__ void apb_fp8_quantize(const bf16* __restrict__ src, long srcStride, unsigned char* __restrict__ dst,
                                            long rowBytes, int cols)
{
    pdl_enter();
    int lane = threadIdx.x & 31, g = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (g * APB_FP8_GROUP >= cols) return;   // whole warps leave together
    fp8_quantize_group(src + blockIdx.y * srcStride, dst + blockIdx.y * rowBytes, cols, g, lane);
}

// Row r of src (bf16 [rows][cols]) quantized into the fp8 row at dst[r] (a table of device addresses): a batched decode
// step's new K or V rows, each into its own sequence's fp8 cache, in one launch. Grid as apb_fp8_quantize's.
extern "C" __global__ void apb_fp8_scatter_quantize(const bf16* __restrict__ src, const unsigned long long* __restrict__ dst, int cols)
{
    pdl_enter();
    int lane = threadIdx.x & 31, g = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (g * APB_FP8_GROUP >= cols) return;
    fp8_quantize_group(src + (long)blockIdx.y * cols, (unsigned char*)dst[blockIdx.y], cols, g, lane);
}

// fp8 rows of rowBytes into bf16 rows [rows][cols] (row stride dstStride): decode(code) x scale, rounded to bf16 (the
// prefill kernels' input). 8 values per thread. Grid: (ceil(cols / 8 / blockDim.x), rows).
extern "C" __global__ void apb_fp8_dequantize(const unsigned char* __restrict__ src, long rowBytes, bf16* __restrict__ dst,
                                              long dstStride, int cols)
{
    pdl_enter();
    int c = (blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (c >= cols) return;
    long r = blockIdx.y;
    const unsigned char* row = src + r * rowBytes;
    float s = ((const float*)(row + cols))[c / APB_FP8_GROUP];
    float f[8];
    e4m3x8_to_f32(*(const uint2*)(row + c), f);
    uint4 o;
    o.x = pack_bf16(f[0] * s, f[1] * s); o.y = pack_bf16(f[2] * s, f[3] * s);
    o.z = pack_bf16(f[4] * s, f[5] * s); o.w = pack_bf16(f[6] * s, f[7] * s);
    *(uint4*)(dst + r * dstStride + c) = o;
}

// 2-D copies between (row, column) windows of row-major tensors, for 2- and 4-byte elements. Grid: (col blocks, rows).
extern "C" __global__ void apb_copy2d_u16(const unsigned short* __restrict__ src, long srcStride, unsigned short* __restrict__ dst, long dstStride, int rows, int cols)
{
    pdl_enter();
    for (long r = blockIdx.y; r < rows; r += gridDim.y)
        for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x)
            dst[r * dstStride + c] = src[r * srcStride + c];
}

extern "C" __global__ void apb_copy2d_u32(const unsigned* __restrict__ src, long srcStride, unsigned* __restrict__ dst, long dstStride, int rows, int cols)
{
    pdl_enter();
    for (long r = blockIdx.y; r < rows; r += gridDim.y)
        for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x)
            dst[r * dstStride + c] = src[r * srcStride + c];
}

// Row r of src into the row at dst[r] (a table of device addresses): a batched decode step's new K or V rows, each to
// its own sequence's cache, in one launch. Rows are whole 16-byte words (the host checks). Grid: (rows), any block.
extern "C" __global__ void apb_scatter_rows(const uint4* __restrict__ src, const unsigned long long* __restrict__ dst, int words)
{
    pdl_enter();
    uint4* to = reinterpret_cast<uint4*>(dst[blockIdx.x]);
    const uint4* from = src + (long)blockIdx.x * words;
    for (int w = threadIdx.x; w < words; w += blockDim.x) to[w] = from[w];
}

// (acc, accLse) := the softmax-weighted combination of (acc, accLse) and (part, partLse), in fp32 with the max
// subtracted. One block per row, one warp per head at a time; lane 0 writes the new LSE after the whole warp has read
// the old one.
extern "C" __global__ void apb_merge_attention(bf16* acc, void* accLse, const bf16* __restrict__ part, const void* __restrict__ partLse,
                                               int lseF32, int heads, int d)
{
    pdl_enter();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    long row = blockIdx.x;
    for (int h = warp; h < heads; h += warps)
    {
        long li = row * heads + h;
        float l1 = load_any(accLse, li, lseF32), l2 = load_any(partLse, li, lseF32);
        if (l2 == APB_NEG_INF) continue;
        bf16* a = acc + (row * heads + h) * d;
        const bf16* p = part + (row * heads + h) * d;
        float w1, w2, lse;
        if (l1 == APB_NEG_INF) { w1 = 0.f; w2 = 1.f; lse = l2; } // acc may hold anything (even NaN): not read below
        else
        {
            float m = fmaxf(l1, l2);
            float e1 = expf(l1 - m), e2 = expf(l2 - m), s = e1 + e2;
            w1 = e1 / s; w2 = e2 / s; lse = m + logf(s);
        }
        for (int c = lane; c < d; c += 32) a[c] = w1 == 0.f ? p[c] : f2bf(w1 * bf2f(a[c]) + w2 * bf2f(p[c]));
        __syncwarp();
        if (lane == 0) store_any(accLse, li, lseF32, lse);
    }
}

// output[row] = the exact merge of `count` partial results stacked part-major ([count x rows, heads x d], LSEs
// [count x rows, heads]): m = max over parts of lse, w = exp(lse - m), output = sum w part / sum w, summed in fp32 in part
// order and rounded to bf16 once. One block per row, one warp per head at a time. A head every part left empty gets 0.
extern "C" __global__ void apb_merge_parts(const bf16* __restrict__ parts, const void* __restrict__ lses, int lseF32,
                                           bf16* __restrict__ out, int count, long rows, int heads, int d)
{
    pdl_enter();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    long row = blockIdx.x;
    long cols = (long)heads * d;
    for (int h = warp; h < heads; h += warps)
    {
        float m = APB_NEG_INF;
        for (int r = 0; r < count; r++) m = fmaxf(m, load_any(lses, ((long)r * rows + row) * heads + h, lseF32));
        bf16* o = out + row * cols + (long)h * d;
        if (m == APB_NEG_INF)
        {
            for (int c = lane; c < d; c += 32) o[c] = f2bf(0.f);
            continue;
        }
        float sum = 0.f;
        for (int r = 0; r < count; r++) sum += expf(load_any(lses, ((long)r * rows + row) * heads + h, lseF32) - m);
        for (int c = lane; c < d; c += 32)
        {
            float acc = 0.f;
            for (int r = 0; r < count; r++)
            {
                float w = expf(load_any(lses, ((long)r * rows + row) * heads + h, lseF32) - m);
                if (w != 0.f) acc += w * bf2f(parts[((long)r * rows + row) * cols + (long)h * d + c]);
            }
            o[c] = f2bf(acc / sum);
        }
    }
}

// out[r] = the column of row r's largest value (bf16 or fp32 by f32), the lowest column on ties; NaN never wins and a
// row with no value above -inf gives 0 (Sampler.ArgMax's rule). One block per row: each thread scans a stride of the
// row (its columns in increasing order, so strict > keeps its lowest), then a warp and a block reduction that prefer the
// larger value, then the lower column.
extern "C" __global__ void apb_argmax_rows(const void* __restrict__ x, int f32, long stride, int cols, int* __restrict__ out)
{
    pdl_enter();
    __shared__ float sv[32];
    __shared__ int si[32];
    long row = blockIdx.x;
    float best = APB_NEG_INF;
    int at = 0x7fffffff;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
    {
        float v = load_any(x, row * stride + c, f32);
        if (v > best) { best = v; at = c; }
    }
    for (int o = 16; o > 0; o >>= 1)
    {
        float v = __shfl_xor_sync(0xffffffffu, best, o);
        int i = __shfl_xor_sync(0xffffffffu, at, o);
        if (v > best || (v == best && i < at)) { best = v; at = i; }
    }
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    if (lane == 0) { sv[warp] = best; si[warp] = at; }
    __syncthreads();
    if (warp == 0)
    {
        best = lane < warps ? sv[lane] : APB_NEG_INF;
        at = lane < warps ? si[lane] : 0x7fffffff;
        for (int o = 16; o > 0; o >>= 1)
        {
            float v = __shfl_xor_sync(0xffffffffu, best, o);
            int i = __shfl_xor_sync(0xffffffffu, at, o);
            if (v > best || (v == best && i < at)) { best = v; at = i; }
        }
        if (lane == 0) out[row] = at == 0x7fffffff ? 0 : at;
    }
}
