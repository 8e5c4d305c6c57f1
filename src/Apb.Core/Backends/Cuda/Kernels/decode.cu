// Decode attention, split over the keys (flash-decoding): a few query rows (Tq <= 16: one decode step, or a handful of
// tokens) against a long KV cache. The prefill kernel gives each (64-row query tile, head) one block that walks the whole
// cache: at Tq = 1 that is `heads` blocks for 132 SMs, each streaming up to 128K keys alone. Here the keys are cut into
// splits instead. apb_decode_split_d{64,128}: one block per (split, KV head, group of <= 64 (query row, head) pairs)
// reads each K/V tile of its split once for every query head of the GQA group, keeps a running softmax over its tiles,
// and writes its output normalized by its own sum plus that sum's LSE. apb_decode_merge combines the splits of each
// (row, head) by their LSEs.
// Conventions as attention.cu: bf16 as raw 16-bit patterns (bf16.cuh; no CUDA headers), fp32 math, natural-log LSE, causal
// = bottom-right aligned (query row i sees key j when j <= i + Tk - Tq), a row that sees no key gets output 0, LSE -inf.
// Partial results are fp32: partO [Tq x heads][splits][D], partLse [Tq x heads][splits] (row = i x heads + h).

#include "bf16.cuh"
#include "fp8.cuh"
#include "decode.cuh"

#define DEC_THREADS 128
#define DEC_TILE 64   // keys per tile
#define DEC_ROWS 64   // (query row, head) pairs per block at most

// Rows [0, n) of a K or V tile into shared memory: 16-byte global loads (8 bf16 each; the host checks the alignment),
// stored as four 32-bit words because the shared row stride (D/2 + 1 words, odd so that threads reading different rows
// at the same column hit different banks) is not a multiple of 16 bytes.
template <int D>
__device__ __forceinline__ void dec_load_tile(const bf16* __restrict__ src, long stride, int n, unsigned* __restrict__ dst)
{
    const int W = D / 2 + 1, V = D / 8;
    for (int e = threadIdx.x; e < n * V; e += DEC_THREADS)
    {
        int j = e / V, c = e - j * V;
        uint4 x = *(const uint4*)(src + (long)j * stride + c * 8);
        unsigned* d = dst + j * W + c * 4;
        d[0] = x.x; d[1] = x.y; d[2] = x.z; d[3] = x.w;
    }
}

// Shared memory, one dynamic block, in 32-bit words (the host's DecodeSharedBytes computes the same total);
// R = min(DEC_ROWS, Tq x group), the same for every block of a launch:
//   sq [R][D/2 + 1]        the block's query rows (bf16 pairs)
//   skv [DEC_TILE][D/2 + 1] the K tile, then the V tile
//   ss [R][DEC_TILE + 1]   scores, then probabilities (fp32)
//   so [R][D]              the running output (fp32); columns 2w, 2w + 1 of pair p belong, for the whole tile loop and
//                          the final write, to the thread that takes index p x D/2 + w (so no barrier guards them)
//   sm, sl, sa [R]         running max, running sum, and this tile's rescale factor per pair
// rowBase: the first partial row of this call's query rows (0 for one sequence; b x heads for sequence b of a batch).
template <int D>
__device__ __forceinline__ void decode_split(const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
    float* __restrict__ partO, float* __restrict__ partLse, int Tq, int Tk, int heads, int kvHeads,
    long qStride, long kStride, float scale, int causal, int tilesPerSplit, int p0, long rowBase)
{
    extern __shared__ unsigned dec_smem[];
    const int W = D / 2 + 1, HALF = D / 2;
    int split = blockIdx.x, splits = gridDim.x, kh = blockIdx.y;
    int g = heads / kvHeads, pairs = Tq * g;
    int R = pairs < DEC_ROWS ? pairs : DEC_ROWS;            // layout size
    int rows = pairs - p0 < DEC_ROWS ? pairs - p0 : DEC_ROWS; // pairs of this block
    unsigned* sq = dec_smem;
    unsigned* skv = sq + R * W;
    float* ss = (float*)(skv + DEC_TILE * W);
    float* so = ss + R * (DEC_TILE + 1);
    float* sm = so + R * D;
    float* sl = sm + R;
    float* sa = sl + R;
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

    // Pair p of this block is query row i = (p0 + p) / g, head h = kh x g + (p0 + p) % g.
    for (int e = tid; e < rows * HALF; e += DEC_THREADS)
    {
        int p = e / HALF, w = e - p * HALF, pp = p0 + p;
        int i = pp / g, h = kh * g + (pp - i * g);
        sq[p * W + w] = ((const unsigned*)(q + (long)i * qStride + (long)h * D))[w];
    }
    for (int p = tid; p < rows; p += DEC_THREADS) { sm[p] = APB_NEG_INF; sl[p] = 0.f; }
    for (int e = tid; e < rows * D; e += DEC_THREADS) so[e] = 0.f;

    long splitStart = (long)split * tilesPerSplit * DEC_TILE;
    long keyEnd = splitStart + (long)tilesPerSplit * DEC_TILE;
    if (keyEnd > Tk) keyEnd = Tk;
    if (causal)
    {
        long last = (long)Tk - Tq + (p0 + rows - 1) / g + 1; // keys the block's last (widest-seeing) row sees
        if (keyEnd > last) keyEnd = last;
    }
    const bf16* kb = k + (long)kh * D;
    const bf16* vb = v + (long)kh * D;
    __syncthreads();

    for (long t0 = splitStart; t0 < keyEnd; t0 += DEC_TILE)
    {
        int n = keyEnd - t0 < DEC_TILE ? (int)(keyEnd - t0) : DEC_TILE;
        dec_load_tile<D>(kb + t0 * kStride, kStride, n, skv);
        __syncthreads();

        // Scores: consecutive threads take consecutive keys of one pair (query words broadcast, key rows bank-spread).
        for (int e = tid; e < rows * DEC_TILE; e += DEC_THREADS)
        {
            int p = e / DEC_TILE, j = e - p * DEC_TILE;
            long limit = causal ? (long)Tk - Tq + (p0 + p) / g + 1 : (long)Tk;
            float s = APB_NEG_INF;
            if (j < n && t0 + j < limit)
            {
                const unsigned* a = sq + p * W;
                const unsigned* b = skv + j * W;
                float acc = 0.f;
#pragma unroll 8
                for (int w = 0; w < HALF; w++)
                {
                    unsigned x = a[w], y = b[w];
                    acc = fmaf(bf_lo(x), bf_lo(y), acc);
                    acc = fmaf(bf_hi(x), bf_hi(y), acc);
                }
                s = acc * scale;
            }
            ss[p * (DEC_TILE + 1) + j] = s;
        }
        __syncthreads();

        // Online softmax, one warp per pair (each lane holds keys lane and lane + 32 of the tile).
        for (int p = warp; p < rows; p += DEC_THREADS / 32)
        {
            float* row = ss + p * (DEC_TILE + 1);
            float a = row[lane], b = row[lane + 32];
            float mx = fmaxf(a, b);
            for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            float mOld = sm[p], mNew = fmaxf(mOld, mx);
            // mNew = -inf: no visible key yet; every probability is 0 and the state (0, 0) stays as it is.
            float ea = mNew == APB_NEG_INF ? 0.f : expf(a - mNew);
            float eb = mNew == APB_NEG_INF ? 0.f : expf(b - mNew);
            row[lane] = ea; row[lane + 32] = eb;
            float sum = ea + eb;
            for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            __syncwarp();
            if (lane == 0)
            {
                float alpha = mOld == APB_NEG_INF ? 0.f : expf(mOld - mNew);
                sa[p] = alpha;
                sl[p] = sl[p] * alpha + sum;
                sm[p] = mNew;
            }
        }
        // The K tile is no longer read (the scores are in ss, behind the barrier above): V goes in its place.
        dec_load_tile<D>(vb + t0 * kStride, kStride, n, skv);
        __syncthreads();

        // o = o x alpha + P V; each thread owns two adjacent columns of a pair (one V word per key).
        for (int e = tid; e < rows * HALF; e += DEC_THREADS)
        {
            int p = e / HALF, w = e - p * HALF;
            const float* pr = ss + p * (DEC_TILE + 1);
            float a0 = 0.f, a1 = 0.f;
            for (int j = 0; j < n; j++)
            {
                unsigned x = skv[j * W + w];
                float pj = pr[j];
                a0 = fmaf(pj, bf_lo(x), a0);
                a1 = fmaf(pj, bf_hi(x), a1);
            }
            float alpha = sa[p];
            float* o = so + p * D + 2 * w;
            o[0] = o[0] * alpha + a0;
            o[1] = o[1] * alpha + a1;
        }
        __syncthreads(); // the next tile overwrites skv and ss
    }

    // This split's result per pair: output / sum and LSE = max + log(sum); a pair that saw no key writes 0 and -inf
    // (the merge skips it, but never reads garbage). Element ownership as in the loop above, so no barrier is needed
    // for so; sm and sl were last written before the loop's final barrier.
    for (int e = tid; e < rows * HALF; e += DEC_THREADS)
    {
        int p = e / HALF, w = e - p * HALF, pp = p0 + p;
        int i = pp / g, h = kh * g + (pp - i * g);
        float l = sl[p], inv = l > 0.f ? 1.f / l : 0.f;
        long row = rowBase + (long)i * heads + h;
        float* dst = partO + (row * splits + split) * D + 2 * w;
        dst[0] = so[p * D + 2 * w] * inv;
        dst[1] = so[p * D + 2 * w + 1] * inv;
        if (w == 0) partLse[row * splits + split] = l > 0.f ? sm[p] + logf(l) : APB_NEG_INF;
    }
}

extern "C" __global__ void __launch_bounds__(DEC_THREADS) apb_decode_split_d64(const bf16* q, const bf16* k, const bf16* v,
    float* partO, float* partLse, int Tq, int Tk, int heads, int kvHeads, long qStride, long kStride, float scale, int causal,
    int tilesPerSplit)
{
    pdl_enter();
    decode_split<64>(q, k, v, partO, partLse, Tq, Tk, heads, kvHeads, qStride, kStride, scale, causal, tilesPerSplit, blockIdx.z * DEC_ROWS, 0);
}

extern "C" __global__ void __launch_bounds__(DEC_THREADS) apb_decode_split_d128(const bf16* q, const bf16* k, const bf16* v,
    float* partO, float* partLse, int Tq, int Tk, int heads, int kvHeads, long qStride, long kStride, float scale, int causal,
    int tilesPerSplit)
{
    pdl_enter();
    decode_split<128>(q, k, v, partO, partLse, Tq, Tk, heads, kvHeads, qStride, kStride, scale, causal, tilesPerSplit, blockIdx.z * DEC_ROWS, 0);
}

// A decode step of B sequences in one launch: query row b (one new token, its key already appended) against sequence b's
// own cache, every key visible. Grid (splits, KV heads, B): blockIdx.z picks the sequence, whose K and V start at
// kv[2b], kv[2b + 1] (device addresses) and hold lens[b] rows; splits cut the longest cache, so a shorter one leaves
// its last splits empty (they write -inf and the merge skips them). Partials as one call of B x heads rows.
template <int D>
__device__ __forceinline__ void decode_batch(const bf16* q, const unsigned long long* __restrict__ kv, const int* __restrict__ lens,
    float* partO, float* partLse, int heads, int kvHeads, long qStride, long kStride, float scale, int tilesPerSplit)
{
    int b = blockIdx.z;
    decode_split<D>(q + (long)b * qStride, (const bf16*)kv[2 * b], (const bf16*)kv[2 * b + 1], partO, partLse, 1, lens[b],
        heads, kvHeads, qStride, kStride, scale, 0, tilesPerSplit, 0, (long)b * heads);
}

extern "C" __global__ void __launch_bounds__(DEC_THREADS) apb_decode_batch_d64(const bf16* q, const unsigned long long* kv, const int* lens,
    float* partO, float* partLse, int heads, int kvHeads, long qStride, long kStride, float scale, int tilesPerSplit)
{
    pdl_enter();
    decode_batch<64>(q, kv, lens, partO, partLse, heads, kvHeads, qStride, kStride, scale, tilesPerSplit);
}

extern "C" __global__ void __launch_bounds__(DEC_THREADS) apb_decode_batch_d128(const bf16* q, const unsigned long long* kv, const int* lens,
    float* partO, float* partLse, int heads, int kvHeads, long qStride, long kStride, float scale, int tilesPerSplit)
{
    pdl_enter();
    decode_batch<128>(q, kv, lens, partO, partLse, heads, kvHeads, qStride, kStride, scale, tilesPerSplit);
}

// One block per (query row, head) = row: out = sum_s w_s O_s / sum_s w_s with w_s = exp(lse_s - max lse), in fp32;
// lse (optional, fp32 or bf16) = max + log(sum_s w_s). Splits with lse -inf weigh 0; all -inf gives 0 and -inf.
// The block first finds the max and the weights together (splits spread over its threads, the weights kept in dynamic
// shared memory: splits floats), then each thread sums its columns over the splits with independent loads. The first
// version walked the splits one after another in every thread, twice: 17.4 us per call at 8K (docs/kernels/decode-step.md).
extern "C" __global__ void __launch_bounds__(128) apb_decode_merge(const float* __restrict__ partO, const float* __restrict__ partLse,
    bf16* __restrict__ out, long oStride, void* __restrict__ lse, int lseF32, int heads, int d, int splits)
{
    pdl_enter();
    extern __shared__ float merge_w[];
    __shared__ float scratch[32];
    long row = blockIdx.x;
    long i = row / heads;
    int h = (int)(row - i * heads);
    const float* pl = partLse + row * splits;
    float mx = APB_NEG_INF;
    for (int s = threadIdx.x; s < splits; s += blockDim.x) mx = fmaxf(mx, pl[s]);
    mx = block_reduce<true>(mx, scratch);
    bf16* o = out + i * oStride + (long)h * d;
    if (mx == APB_NEG_INF)
    {
        for (int c = threadIdx.x; c < d; c += blockDim.x) o[c] = 0;
        if (threadIdx.x == 0 && lse) store_any(lse, row, lseF32, APB_NEG_INF);
        return;
    }
    float part = 0.f;
    for (int s = threadIdx.x; s < splits; s += blockDim.x)
    {
        float e = pl[s] == APB_NEG_INF ? 0.f : expf(pl[s] - mx);
        merge_w[s] = e;
        part += e;
    }
    float total = block_reduce<false>(part, scratch); // its barriers also publish merge_w
    const float* po = partO + row * splits * (long)d;
    for (int c = threadIdx.x; c < d; c += blockDim.x)
    {
        float acc = 0.f;
#pragma unroll 8
        for (int s = 0; s < splits; s++)
        {
            float e = merge_w[s], v = po[(long)s * d + c];
            acc = e == 0.f ? acc : fmaf(e, v, acc);
        }
        o[c] = f2bf(acc / total);
    }
    if (threadIdx.x == 0 && lse) store_any(lse, row, lseF32, mx + logf(total));
}

// ---------------------------------------------------------------------------------------------------------------------
// Version 2, for calls with at most 8 (query row, head) pairs per KV head (a decode step of any GQA group up to 8, or
// 2 rows of a group of 4): the common case, where version 1 streamed the cache at about 1 TB/s because every tile went
// global -> shared -> registers behind two barriers, with nothing else in flight. Here there is no shared memory in the
// loop and no barrier: each key row (D bf16 = D x 2 bytes) is read by a group of D/8 lanes, 16 bytes each, straight into
// registers; a lane group takes U keys per step and issues all 2U loads (K and V) before it computes, so a block of 128
// threads keeps 128 x 2U x 16 bytes in flight; with PF the next step's loads are issued before this step's math (a
// register double buffer). Each lane holds its 8 dims of the P pairs' queries (pre-scaled by scale x log2 e, so exp2
// replaces exp) and of their running outputs; a score is the lane group's partial dots summed by xor-shuffles. Lane
// groups keep their own running max/sum/output over their keys; at the end the block's groups are merged through
// shared memory into the split's partial (the same partO/partLse format and merge kernel as version 1). Pairs beyond
// the call's (P rounds up) hold a zero query and are never written. The loop's trip count is the block's, not the
// lane group's, so every lane reaches every shuffle.
#define DV2_THREADS 128
#define DV2_U 4
// An experiment's knob, off by default: APB_KERNEL_DEFINES="DV2_MIN_BLOCKS=N" asks the compiler to fit N blocks per SM
// in the kernels of at most 4 pairs (a register cap); the host cuts the splits for one wave of whatever the driver says
// fits, so nothing else changes. Measured (docs/kernels/decode-step.md): N = 4 caps p4_pf at 128 registers with 24 bytes
// of spills and streamed 128K keys at 3.02 TB/s, no better than the default's 3 blocks; and N = 1 is not the default,
// it raised p4_pf from 172 to 213 registers (2 blocks per SM) and the 128K step from 9.5 to 11.3 ms.
#ifdef DV2_MIN_BLOCKS
#define DV2_BOUNDS(P) __launch_bounds__(DV2_THREADS, (P) <= 4 ? DV2_MIN_BLOCKS : 1)
#else
#define DV2_BOUNDS(P) __launch_bounds__(DV2_THREADS)
#endif

__device__ __forceinline__ uint4 dv2_load(const bf16* p) { return *(const uint4*)p; }

// Experiment knobs for the fp8 source, defaults as first written (docs/kernels/decode-fp8.md has what each measured):
// DV2_FP8_U, keys per lane group and step (an fp8 row load is half a bf16 one's bytes, so twice the keys keep the same
// bytes in flight); DV2_FP8_VONCE, 1 to convert a step's value rows once for all pairs (registers: U x 8 floats), 0 to
// convert them in each pair's loop (P times the conversions, none of those registers).
#ifndef DV2_FP8_U
#define DV2_FP8_U DV2_U
#endif
#ifndef DV2_FP8_VONCE
#define DV2_FP8_VONCE 1
#endif

// Where version 2 reads the cache from: a lane's 8 values of a key (or value) row. Both sources give a row as raw
// values and a scale; the kernel multiplies the scale into the lane's partial dot (keys) and into the softmax weight
// (values), so dequantization costs one multiply per row and lane, not one per value.
// bf16 (the default cache): 16 bytes per lane and row, scale 1 (the multiply by 1 folds away).
struct Dv2Bf16
{
    struct Row { uint4 x; };
    static constexpr bool Fp8 = false;
    static constexpr int U = DV2_U;
    const bf16* p; long stride;
    __device__ __forceinline__ Row load(long t) const { Row r; r.x = dv2_load(p + t * stride); return r; }
    __device__ __forceinline__ static Row zero() { Row r; r.x.x = r.x.y = r.x.z = r.x.w = 0u; return r; }
    __device__ __forceinline__ static float scale(const Row&) { return 1.f; }
    __device__ __forceinline__ static void unpack(const Row& r, float f[8])
    {
        f[0] = bf_lo(r.x.x); f[1] = bf_hi(r.x.x); f[2] = bf_lo(r.x.y); f[3] = bf_hi(r.x.y);
        f[4] = bf_lo(r.x.z); f[5] = bf_hi(r.x.z); f[6] = bf_lo(r.x.w); f[7] = bf_hi(r.x.w);
    }
};
// fp8 (--kv-cache-dtype fp8, fp8.cuh): 8 code bytes per lane and row, and the fp32 scale of their group of 32 (4
// lanes share it); rows of codes then scales (elementwise.cu's layout). p and s point at the lane's first code and
// scale of row 0; stride in bytes, sStride in floats.
struct Dv2Fp8
{
    struct Row { uint2 x; float s; };
    static constexpr bool Fp8 = true;
    static constexpr int U = DV2_FP8_U;
    const unsigned char* p; const float* s; long stride, sStride;
    __device__ __forceinline__ Row load(long t) const
    {
        Row r; r.x = *(const uint2*)(p + t * stride); r.s = s[t * sStride]; return r;
    }
    __device__ __forceinline__ static Row zero() { Row r; r.x.x = r.x.y = 0u; r.s = 0.f; return r; }
    __device__ __forceinline__ static float scale(const Row& r) { return r.s; }
    __device__ __forceinline__ static void unpack(const Row& r, float f[8]) { e4m3x8_to_f32(r.x, f); }
};

template <int D, int P, bool PF, class Src>
__device__ __forceinline__ void decode_split2(const bf16* __restrict__ q, const Src ks, const Src vs,
    float* __restrict__ partO, float* __restrict__ partLse, int Tq, int Tk, int heads, int kvHeads,
    long qStride, float scale, int causal, int keysPerSplit, long rowBase)
{
    typedef typename Src::Row Row;
    constexpr int U = Src::U;                  // keys per lane group and step
    constexpr int L = D / 8;                   // lanes per key row
    constexpr int GW = 32 / L;                 // lane groups per warp
    constexpr int G = GW * (DV2_THREADS / 32); // lane groups per block
    constexpr int STEP = G * U;                // keys per block step
    constexpr bool VONCE = Src::Fp8 && DV2_FP8_VONCE;
    __shared__ float s_m[G][P], s_l[G][P];
    __shared__ float s_o[G][P][D];

    int split = blockIdx.x, splits = gridDim.x, kh = blockIdx.y;
    int g = heads / kvHeads, pairs = Tq * g;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int sub = lane / L, li = lane - sub * L, grp = warp * GW + sub;
    const float qscale = scale * 1.4426950408889634f;

    float qf[P][8];
    int lim[P];
#pragma unroll
    for (int p = 0; p < P; p++)
    {
        lim[p] = Tk;
        if (p < pairs)
        {
            int i = p / g, h = kh * g + (p - i * g);
            uint4 x = dv2_load(q + (long)i * qStride + (long)h * D + li * 8);
            qf[p][0] = bf_lo(x.x) * qscale; qf[p][1] = bf_hi(x.x) * qscale;
            qf[p][2] = bf_lo(x.y) * qscale; qf[p][3] = bf_hi(x.y) * qscale;
            qf[p][4] = bf_lo(x.z) * qscale; qf[p][5] = bf_hi(x.z) * qscale;
            qf[p][6] = bf_lo(x.w) * qscale; qf[p][7] = bf_hi(x.w) * qscale;
            if (causal) lim[p] = Tk - Tq + i + 1;
        }
        else
        {
#pragma unroll
            for (int c = 0; c < 8; c++) qf[p][c] = 0.f;
        }
    }

    long start = (long)split * keysPerSplit, end = start + keysPerSplit;
    if (end > Tk) end = Tk;
    if (causal)
    {
        long last = (long)Tk - Tq + (pairs - 1) / g + 1; // keys the widest-seeing pair sees
        if (end > last) end = last;
    }

    float m[P], l[P], acc[P][8];
#pragma unroll
    for (int p = 0; p < P; p++)
    {
        m[p] = APB_NEG_INF; l[p] = 0.f;
#pragma unroll
        for (int c = 0; c < 8; c++) acc[p][c] = 0.f;
    }

    Row kx[U], vx[U];
    const Row zero = Src::zero();
#pragma unroll
    for (int u = 0; u < U; u++)
    {
        long t = start + grp + u * G;
        kx[u] = t < end ? ks.load(t) : zero;
        vx[u] = t < end ? vs.load(t) : zero;
    }
    for (long base = start; base < end; base += STEP)
    {
        Row kn[U], vn[U];
        if (PF)
        {
#pragma unroll
            for (int u = 0; u < U; u++)
            {
                long t = base + STEP + grp + u * G;
                kn[u] = t < end ? ks.load(t) : zero;
                vn[u] = t < end ? vs.load(t) : zero;
            }
        }

        float s[P][U];
#pragma unroll
        for (int u = 0; u < U; u++)
        {
            float kf[8];
            Src::unpack(kx[u], kf);
            float ksc = Src::scale(kx[u]);
#pragma unroll
            for (int p = 0; p < P; p++)
            {
                float a = 0.f;
#pragma unroll
                for (int c = 0; c < 8; c++) a = fmaf(qf[p][c], kf[c], a);
                s[p][u] = a * ksc;   // the group's scale on the lane's partial: the same product in either order
            }
        }
        // fp8 values are converted once per step for all pairs (DV2_FP8_VONCE, the default); bf16 ones, and fp8 ones
        // with VONCE off, are unpacked where used (bf16: two ALU ops each, which keeps the bf16 kernel's registers).
        float vf[VONCE ? U : 1][8];
        if (VONCE)
        {
#pragma unroll
            for (int u = 0; u < U; u++) Src::unpack(vx[u], vf[VONCE ? u : 0]);
        }
#pragma unroll
        for (int o = L / 2; o > 0; o >>= 1)
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int p = 0; p < P; p++) s[p][u] += __shfl_xor_sync(0xffffffffu, s[p][u], o);

#pragma unroll
        for (int p = 0; p < P; p++)
        {
            float cmax = APB_NEG_INF;
#pragma unroll
            for (int u = 0; u < U; u++)
            {
                long t = base + grp + u * G;
                if (t >= end || t >= lim[p]) s[p][u] = APB_NEG_INF;
                cmax = fmaxf(cmax, s[p][u]);
            }
            float mNew = fmaxf(m[p], cmax);
            // No visible key yet (mNew = -inf): exp2 against 0 keeps every term 0 and the state as it is.
            float mu = mNew == APB_NEG_INF ? 0.f : mNew;
            float alpha = exp2f(m[p] - mu);
            l[p] *= alpha;
#pragma unroll
            for (int c = 0; c < 8; c++) acc[p][c] *= alpha;
#pragma unroll
            for (int u = 0; u < U; u++)
            {
                float e = exp2f(s[p][u] - mu);
                l[p] += e;
                float ev = e * Src::scale(vx[u]);
                float vv[8];
                if (VONCE)
                {
#pragma unroll
                    for (int c = 0; c < 8; c++) vv[c] = vf[VONCE ? u : 0][c];
                }
                else
                    Src::unpack(vx[u], vv);
#pragma unroll
                for (int c = 0; c < 8; c++) acc[p][c] = fmaf(ev, vv[c], acc[p][c]);
            }
            m[p] = mNew;
        }

        if (PF)
        {
#pragma unroll
            for (int u = 0; u < U; u++) { kx[u] = kn[u]; vx[u] = vn[u]; }
        }
        else if (base + STEP < end)
        {
#pragma unroll
            for (int u = 0; u < U; u++)
            {
                long t = base + STEP + grp + u * G;
                kx[u] = t < end ? ks.load(t) : zero;
                vx[u] = t < end ? vs.load(t) : zero;
            }
        }
    }

    // The block's lane groups into one partial per pair: max over the groups, sums and outputs rescaled to it.
#pragma unroll
    for (int p = 0; p < P; p++)
    {
        if (li == 0) { s_m[grp][p] = m[p]; s_l[grp][p] = l[p]; }
#pragma unroll
        for (int c = 0; c < 8; c++) s_o[grp][p][li * 8 + c] = acc[p][c];
    }
    __syncthreads();
    decode_block_partial<G, P, D, DV2_THREADS>(s_m, s_l, s_o, pairs, g, kh, heads, rowBase, split, splits, partO, partLse);
}

// A bf16 cache's lane source: the lane's 8 values of KV head kh in rows of kStride elements.
template <int D>
__device__ __forceinline__ Dv2Bf16 dv2_bf16(const bf16* base, int kh, long kStride)
{
    Dv2Bf16 r; r.p = base + (long)kh * D + (threadIdx.x & 31) % (D / 8) * 8; r.stride = kStride; return r;
}
// An fp8 cache's: rows of rowBytes, each cols codes then cols / 32 fp32 scales.
template <int D>
__device__ __forceinline__ Dv2Fp8 dv2_fp8(const unsigned char* base, int kh, long rowBytes, int cols)
{
    int li = (threadIdx.x & 31) % (D / 8);
    Dv2Fp8 r; r.p = base + (long)kh * D + li * 8;
    r.s = (const float*)(base + cols) + (long)kh * (D / APB_FP8_GROUP) + li * 8 / APB_FP8_GROUP;
    r.stride = rowBytes; r.sStride = rowBytes / 4; return r;
}

// One sequence (Tq rows, bottom-right causal or none): grid (splits, KV heads).
#define DV2_SPLIT(D, P, PF, NAME) \
extern "C" __global__ void DV2_BOUNDS(P) NAME(const bf16* q, const bf16* k, const bf16* v, float* partO, \
    float* partLse, int Tq, int Tk, int heads, int kvHeads, long qStride, long kStride, float scale, int causal, int keysPerSplit) \
{ pdl_enter(); int kh = blockIdx.y; \
  decode_split2<D, P, PF>(q, dv2_bf16<D>(k, kh, kStride), dv2_bf16<D>(v, kh, kStride), partO, partLse, Tq, Tk, heads, kvHeads, \
      qStride, scale, causal, keysPerSplit, 0); }

// B sequences, one query row each against its own cache (the table of version 1's batch kernel): grid (splits, KV heads, B).
#define DV2_BATCH(D, P, PF, NAME) \
extern "C" __global__ void DV2_BOUNDS(P) NAME(const bf16* q, const unsigned long long* __restrict__ kv, \
    const int* __restrict__ lens, float* partO, float* partLse, int heads, int kvHeads, long qStride, long kStride, float scale, \
    int keysPerSplit) \
{ pdl_enter(); int b = blockIdx.z, kh = blockIdx.y; \
  decode_split2<D, P, PF>(q + (long)b * qStride, dv2_bf16<D>((const bf16*)kv[2 * b], kh, kStride), \
      dv2_bf16<D>((const bf16*)kv[2 * b + 1], kh, kStride), partO, partLse, 1, lens[b], heads, kvHeads, qStride, scale, 0, \
      keysPerSplit, (long)b * heads); }

// One sequence against an fp8 cache (rows of rowBytes: kvHeads x D codes, then their scales): grid (splits, KV heads).
#define DV2_SPLIT_FP8(D, P, PF, NAME) \
extern "C" __global__ void DV2_BOUNDS(P) NAME(const bf16* q, const unsigned char* k, const unsigned char* v, float* partO, \
    float* partLse, int Tq, int Tk, int heads, int kvHeads, long qStride, long rowBytes, float scale, int causal, int keysPerSplit) \
{ pdl_enter(); int kh = blockIdx.y, cols = kvHeads * D; \
  decode_split2<D, P, PF>(q, dv2_fp8<D>(k, kh, rowBytes, cols), dv2_fp8<D>(v, kh, rowBytes, cols), partO, partLse, Tq, Tk, \
      heads, kvHeads, qStride, scale, causal, keysPerSplit, 0); }

// B sequences against their own fp8 caches (the batch table holds each sequence's K and V row addresses): grid (splits, KV heads, B).
#define DV2_BATCH_FP8(D, P, PF, NAME) \
extern "C" __global__ void DV2_BOUNDS(P) NAME(const bf16* q, const unsigned long long* __restrict__ kv, \
    const int* __restrict__ lens, float* partO, float* partLse, int heads, int kvHeads, long qStride, long rowBytes, float scale, \
    int keysPerSplit) \
{ pdl_enter(); int b = blockIdx.z, kh = blockIdx.y, cols = kvHeads * D; \
  decode_split2<D, P, PF>(q + (long)b * qStride, dv2_fp8<D>((const unsigned char*)kv[2 * b], kh, rowBytes, cols), \
      dv2_fp8<D>((const unsigned char*)kv[2 * b + 1], kh, rowBytes, cols), partO, partLse, 1, lens[b], heads, kvHeads, qStride, \
      scale, 0, keysPerSplit, (long)b * heads); }

#define DV2_ALL(D, P) \
  DV2_SPLIT(D, P, false, apb_decode2_split_d##D##_p##P) DV2_SPLIT(D, P, true, apb_decode2_split_d##D##_p##P##_pf) \
  DV2_BATCH(D, P, false, apb_decode2_batch_d##D##_p##P) DV2_BATCH(D, P, true, apb_decode2_batch_d##D##_p##P##_pf) \
  DV2_SPLIT_FP8(D, P, false, apb_decode2_split_d##D##_p##P##_fp8) DV2_SPLIT_FP8(D, P, true, apb_decode2_split_d##D##_p##P##_pf_fp8) \
  DV2_BATCH_FP8(D, P, false, apb_decode2_batch_d##D##_p##P##_fp8) DV2_BATCH_FP8(D, P, true, apb_decode2_batch_d##D##_p##P##_pf_fp8)
DV2_ALL(64, 1) DV2_ALL(64, 2) DV2_ALL(64, 4) DV2_ALL(64, 8)
DV2_ALL(128, 1) DV2_ALL(128, 2) DV2_ALL(128, 4) DV2_ALL(128, 8)
