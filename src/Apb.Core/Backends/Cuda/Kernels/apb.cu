// APB's per-layer scoring and selection on the device (docs/apb-algorithm.md, steps 2.3b and 2.3d): the query mean and the
// query-aware score (one dot per token and KV head), the max-pool over the sequence, the top-l_p rows per KV head, and
// the gather of the chosen rows per head into the send buffer. Same conventions as elementwise.cu: bf16 as raw 16-bit
// patterns (bf16.cuh), fp32 accumulation, no CUDA headers.

#include "bf16.cuh"

// out[t, h] = dot(x[t, h*d .. h*d+d), vec[h*d .. h*d+d)): one warp per (row, head), fp32 accumulation. x is bf16 with row
// stride xStride; vec and out are bf16 or fp32 (flags). Block: 256 threads = 8 (row, head) pairs.
extern "C" __global__ void apb_head_dot(const bf16* __restrict__ x, long xStride, const void* __restrict__ vec, int vecF32,
    void* __restrict__ out, int outF32, int rows, int heads, int d)
{
    long pair = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (pair >= (long)rows * heads) return;
    long t = pair / heads;
    int h = (int)(pair - t * heads);
    const bf16* row = x + t * xStride + (long)h * d;
    float acc = 0.f;
    for (int c = lane; c < d; c += 32) acc += bf2f(row[c]) * load_any(vec, (long)h * d + c, vecF32);
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) store_any(out, pair, outF32, acc);
}

// APB's qbar: out[g*d + c] = mean over rows t and the groupSize heads h of group g of x[t, h*d + c] (the query rows
// averaged per KV head over its group of query heads), fp32 sums. Block: 256 threads = 32 adjacent output columns x 8
// slices that split the rows; the slices' partial sums meet in shared memory. Grid: ceil(groups x d / 32) column tiles.
// out is bf16 or fp32 (flag).
extern "C" __global__ void apb_group_mean(const bf16* __restrict__ x, long xStride, void* __restrict__ out, int outF32,
    int rows, int groups, int groupSize, int d)
{
    __shared__ float part[8][32];
    int lane = threadIdx.x & 31, slice = threadIdx.x >> 5;
    int col = blockIdx.x * 32 + lane, cols = groups * d;
    float acc = 0.f;
    if (col < cols)
    {
        int g = col / d, c = col - g * d;
        for (int t = slice; t < rows; t += 8)
        {
            const bf16* p = x + (long)t * xStride + (long)g * groupSize * d + c;
            for (int j = 0; j < groupSize; j++) acc += bf2f(p[(long)j * d]);
        }
    }
    part[slice][lane] = acc;
    __syncthreads();
    if (slice != 0 || col >= cols) return;
    float sum = 0.f;
    for (int i = 0; i < 8; i++) sum += part[i][lane];
    store_any(out, col, outF32, sum / ((float)rows * (float)groupSize));
}

// The same mean over many rows (the novelty term's key mean runs over a whole block, 16K rows and more), in two passes
// that keep the sum's order fixed (no atomics: the same inputs give the same bits). Pass 1, grid (column tiles, row
// chunks): part[chunk][col] = the chunk's sum, as apb_group_mean sums (8 slices of a 256-thread block). Pass 2: out[col]
// = (sum of the chunks' sums in chunk order) x inv.
extern "C" __global__ void apb_group_mean_part(const bf16* __restrict__ x, long xStride, float* __restrict__ part,
    int rows, int groups, int groupSize, int d, int rowsPer)
{
    __shared__ float sums[8][32];
    int lane = threadIdx.x & 31, slice = threadIdx.x >> 5;
    int col = blockIdx.x * 32 + lane, cols = groups * d;
    int from = blockIdx.y * rowsPer, to = min(rows, from + rowsPer);
    float acc = 0.f;
    if (col < cols)
    {
        int g = col / d, c = col - g * d;
        for (int t = from + slice; t < to; t += 8)
        {
            const bf16* p = x + (long)t * xStride + (long)g * groupSize * d + c;
            for (int j = 0; j < groupSize; j++) acc += bf2f(p[(long)j * d]);
        }
    }
    sums[slice][lane] = acc;
    __syncthreads();
    if (slice != 0 || col >= cols) return;
    float sum = 0.f;
    for (int i = 0; i < 8; i++) sum += sums[i][lane];
    part[(long)blockIdx.y * cols + col] = sum;
}

extern "C" __global__ void apb_group_mean_finish(const float* __restrict__ part, int chunks, void* __restrict__ out, int outF32,
    int cols, float inv)
{
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= cols) return;
    float sum = 0.f;
    for (int k = 0; k < chunks; k++) sum += part[(long)k * cols + col];
    store_any(out, col, outF32, sum * inv);
}

// Two sums at once (a local pair type: these kernels include no CUDA headers, so no float2).
struct apb_sum2 { float x, y; };

// Sums x and y over the block (blockDim a multiple of 32), returned to every thread. Ends on a barrier, so the next call
// may reuse scratch at once.
__device__ __forceinline__ apb_sum2 apb_block_sum2(float x, float y, float (*scratch)[32])
{
    for (int o = 16; o > 0; o >>= 1) { x += __shfl_xor_sync(0xffffffffu, x, o); y += __shfl_xor_sync(0xffffffffu, y, o); }
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    if (lane == 0) { scratch[0][warp] = x; scratch[1][warp] = y; }
    __syncthreads();
    x = lane < warps ? scratch[0][lane] : 0.f;
    y = lane < warps ? scratch[1][lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) { x += __shfl_xor_sync(0xffffffffu, x, o); y += __shfl_xor_sync(0xffffffffu, y, o); }
    __syncthreads();
    apb_sum2 r = { x, y };
    return r;
}

// out[t, h] = wa z(a)[t, h] + wb z(b)[t, h], z standardizing column h over the rows (population std; 0 for a constant
// column): CpuPassingOps.CombineStandardized. One block per column: the sums, the squared deviations from the mean, then
// the writes. fp32 [rows, heads]; out may be a or b (hence no __restrict__): the first two passes only read, and in the
// last each element is read, then written, by the same thread.
extern "C" __global__ void apb_combine_standardized(const float* a, float wa, const float* b, float wb, float* out, int rows, int heads)
{
    __shared__ float scratch[2][32];
    int h = blockIdx.x;
    float sa = 0.f, sb = 0.f;
    for (int t = threadIdx.x; t < rows; t += blockDim.x) { sa += a[(long)t * heads + h]; sb += b[(long)t * heads + h]; }
    apb_sum2 sum = apb_block_sum2(sa, sb, scratch);
    float ma = sum.x / (float)rows, mb = sum.y / (float)rows;
    float da = 0.f, db = 0.f;
    for (int t = threadIdx.x; t < rows; t += blockDim.x)
    {
        float x = a[(long)t * heads + h] - ma, y = b[(long)t * heads + h] - mb;
        da += x * x; db += y * y;
    }
    apb_sum2 dev = apb_block_sum2(da, db, scratch);
    float sda = sqrtf(dev.x / (float)rows), sdb = sqrtf(dev.y / (float)rows);
    float ka = sda > 0.f ? wa / sda : 0.f, kb = sdb > 0.f ? wb / sdb : 0.f;
    for (int t = threadIdx.x; t < rows; t += blockDim.x)
    {
        long i = (long)t * heads + h;
        out[i] = ka * (a[i] - ma) + kb * (b[i] - mb);
    }
}

// dst[i, h*d + c] = src[index[i*heads + h], h*d + c]: rows chosen per head. Grid (dst rows, heads); cols = heads x d.
// An index outside [0, srcRows) (a selection that failed to write its slot, which is set to -1 first) fills the row's
// slice with all-ones bits, a NaN in bf16 and fp32 alike, so the failure shows in every check instead of reading memory
// out of bounds.
extern "C" __global__ void apb_gather_head_rows_u16(const unsigned short* __restrict__ src, int srcRows, const int* __restrict__ index,
    unsigned short* __restrict__ dst, int heads, int d)
{
    long cols = (long)heads * d;
    int i = blockIdx.x, h = blockIdx.y, r = index[(long)i * heads + h];
    unsigned short* o = dst + (long)i * cols + (long)h * d;
    if (r < 0 || r >= srcRows) { for (int c = threadIdx.x; c < d; c += blockDim.x) o[c] = 0xffffu; return; }
    const unsigned short* s = src + (long)r * cols + (long)h * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) o[c] = s[c];
}

extern "C" __global__ void apb_gather_head_rows_u32(const unsigned* __restrict__ src, int srcRows, const int* __restrict__ index,
    unsigned* __restrict__ dst, int heads, int d)
{
    long cols = (long)heads * d;
    int i = blockIdx.x, h = blockIdx.y, r = index[(long)i * heads + h];
    unsigned* o = dst + (long)i * cols + (long)h * d;
    if (r < 0 || r >= srcRows) { for (int c = threadIdx.x; c < d; c += blockDim.x) o[c] = 0xffffffffu; return; }
    const unsigned* s = src + (long)r * cols + (long)h * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) o[c] = s[c];
}

// pooled[t, h] = max of scores[u, h] for |u - t| <= 2 inside [0, rows): CpuPassingOps.MaxPool. Scores bf16 or fp32,
// pooled fp32. fmaxf would drop a NaN where the host's MathF.Max keeps it: compare by hand to match.
extern "C" __global__ void apb_max_pool5(const void* __restrict__ scores, int scoresF32, float* __restrict__ pooled, int rows, int heads)
{
    long n = (long)rows * heads;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    {
        long t = i / heads;
        int h = (int)(i - t * heads);
        long lo = t - 2 < 0 ? 0 : t - 2, hi = t + 2 > rows - 1 ? rows - 1 : t + 2;
        float m = APB_NEG_INF;
        for (long u = lo; u <= hi; u++)
        {
            float v = load_any(scores, u * heads + h, scoresF32);
            if (v != v || m != m) m = __int_as_float(0x7fc00000); else if (v > m) m = v;
        }
        pooled[i] = m;
    }
}

// Orders floats as float.CompareTo does: NaN below everything, -0 equal to +0; larger float -> larger key.
__device__ __forceinline__ unsigned order_key(float f)
{
    if (f != f) return 0u;
    if (f == 0.f) f = 0.f;
    unsigned u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

#define APB_TOPK_THREADS 1024

// For each head (one block each) the `count` rows of pooled[:, h] with the largest values, ties to the earlier row, written
// in ascending row order: picked[i*heads + h] = head h's i-th row (CpuPassingOps.Select after its max-pool).
// Radix select on the order keys, 8 bits per pass from the top, finds the count-th largest key T and how many rows equal
// to T are taken (the earliest ones); then every thread walks a contiguous chunk of rows twice to write its picks in order.
extern "C" __global__ void __launch_bounds__(APB_TOPK_THREADS) apb_topk_rows(const float* __restrict__ pooled, int rows, int heads,
    int count, int* __restrict__ picked)
{
    __shared__ unsigned hist[256];
    __shared__ int eqScan[APB_TOPK_THREADS], pickScan[APB_TOPK_THREADS];
    __shared__ unsigned sPrefix;
    __shared__ int sK;
    int h = blockIdx.x, tid = threadIdx.x, nt = blockDim.x;
    if (count <= 0) return;
    unsigned prefix = 0u, mask = 0u;
    int k = count;
    for (int shift = 24; shift >= 0; shift -= 8)
    {
        for (int b = tid; b < 256; b += nt) hist[b] = 0u;
        __syncthreads();
        for (int t = tid; t < rows; t += nt)
        {
            unsigned key = order_key(pooled[(long)t * heads + h]);
            if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (tid == 0)
        {
            int cum = 0, sel = 0;
            for (int b = 255; b >= 0; b--)
            {
                if (cum + (int)hist[b] >= k) { sel = b; break; }
                cum += (int)hist[b];
            }
            sK = k - cum;
            sPrefix = prefix | ((unsigned)sel << shift);
        }
        __syncthreads();
        prefix = sPrefix; k = sK;
        mask |= 255u << shift;
        __syncthreads();
    }
    // prefix = T (the count-th largest key); k = how many rows with key T are taken, the earliest ones.
    int chunk = (rows + nt - 1) / nt, lo = tid * chunk, hi = lo + chunk < rows ? lo + chunk : rows;
    int eq = 0, gt = 0;
    for (int t = lo; t < hi; t++)
    {
        unsigned key = order_key(pooled[(long)t * heads + h]);
        eq += key == prefix; gt += key > prefix;
    }
    eqScan[tid] = eq;
    __syncthreads();
    if (tid == 0) { int s = 0; for (int i = 0; i < nt; i++) { int v = eqScan[i]; eqScan[i] = s; s += v; } }
    __syncthreads();
    int eqBefore = eqScan[tid];
    int takeEq = k - eqBefore < 0 ? 0 : (k - eqBefore > eq ? eq : k - eqBefore);
    pickScan[tid] = gt + takeEq;
    __syncthreads();
    if (tid == 0) { int s = 0; for (int i = 0; i < nt; i++) { int v = pickScan[i]; pickScan[i] = s; s += v; } }
    __syncthreads();
    int pos = pickScan[tid], seen = eqBefore;
    for (int t = lo; t < hi; t++)
    {
        unsigned key = order_key(pooled[(long)t * heads + h]);
        bool take = key > prefix;
        if (key == prefix) { take = seen < k; seen++; }
        if (take) { picked[(long)pos * heads + h] = t; pos++; }
    }
}

// The selection best first: each head's `count` picked rows (ascending, from apb_topk_rows) reordered by descending
// pooled score, ties to the earlier row (the order apb_topk_rows selects by), so every prefix of m rows is the top-m
// selection. Grid (ceil(count / 256), heads), 256 threads: thread i counts the picked rows that come before its own
// (one pass over them, 256 at a time through shared memory) and writes its row at that rank. O(count^2) per head: 2.6e5
// comparisons at l_p 512, 6.7e7 at 8192, spread over count / 256 blocks per head.
extern "C" __global__ void __launch_bounds__(256) apb_rank_best_first(const float* __restrict__ pooled, int heads,
    const int* __restrict__ ascending, int count, int* __restrict__ out)
{
    __shared__ unsigned sKey[256];
    __shared__ int sRow[256];
    int h = blockIdx.y, i = blockIdx.x * 256 + threadIdx.x;
    int row = i < count ? ascending[(long)i * heads + h] : 0;
    unsigned key = i < count ? order_key(pooled[(long)row * heads + h]) : 0u;
    int rank = 0;
    for (int base = 0; base < count; base += 256)
    {
        int j = base + threadIdx.x;
        if (j < count)
        {
            int r = ascending[(long)j * heads + h];
            sRow[threadIdx.x] = r;
            sKey[threadIdx.x] = order_key(pooled[(long)r * heads + h]);
        }
        __syncthreads();
        int n = count - base < 256 ? count - base : 256;
        for (int t = 0; t < n; t++)
            rank += sKey[t] > key || (sKey[t] == key && sRow[t] < row);
        __syncthreads();
    }
    if (i < count) out[(long)rank * heads + h] = row;
}

// The retaining heads' input: dst[t, :] = [a[t, :]; b[t, :]; c[t, :]] (q, k, v of one row side by side), one grid-stride
// pass over dst's rows x (aCols + bCols + cCols) elements instead of three strided copies.
extern "C" __global__ void apb_concat3(const bf16* __restrict__ a, int aCols, const bf16* __restrict__ b, int bCols,
    const bf16* __restrict__ c, int cCols, bf16* __restrict__ dst, long rows)
{
    int cols = aCols + bCols + cCols;
    long n = rows * cols;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    {
        long t = i / cols;
        int j = (int)(i - t * cols);
        dst[i] = j < aCols ? a[t * aCols + j] : j < aCols + bCols ? b[t * bCols + (j - aCols)] : c[t * cCols + (j - aCols - bCols)];
    }
}

// The retaining heads' fc2 with the SiLU before it: out[t, o] = sum_j silu(h[t, j]) w[o, j] for o < n <= APB_NARROW_MAX
// (n_kv outputs: a GEMM that narrow leaves the GPU idle). One block of 256 threads per row: each thread takes the SiLU of
// every 256th element once and accumulates all n outputs in fp32; warps reduce by shuffles, then the 8 warps' partial
// sums meet in shared memory. h is [rows, k] bf16, w [n, k] bf16, out [rows, n] bf16.
#define APB_NARROW_MAX 16
extern "C" __global__ void __launch_bounds__(256) apb_silu_linear_narrow(const bf16* __restrict__ h, const bf16* __restrict__ w,
    bf16* __restrict__ out, int k, int n)
{
    __shared__ float part[8][APB_NARROW_MAX];
    long t = blockIdx.x;
    const bf16* row = h + t * (long)k;
    float acc[APB_NARROW_MAX];
#pragma unroll
    for (int o = 0; o < APB_NARROW_MAX; o++) acc[o] = 0.f;
    for (int j = threadIdx.x; j < k; j += 256)
    {
        float g = bf2f(row[j]);
        float s = g / (1.f + expf(-g));
#pragma unroll
        for (int o = 0; o < APB_NARROW_MAX; o++)
            if (o < n) acc[o] += s * bf2f(w[(long)o * k + j]);
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 0; o < APB_NARROW_MAX; o++)
    {
        float v = acc[o];
        for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
        if (lane == 0) part[warp][o] = v;
    }
    __syncthreads();
    if ((int)threadIdx.x < n)
    {
        float s = 0.f;
        for (int i = 0; i < 8; i++) s += part[i][threadIdx.x];
        out[t * n + threadIdx.x] = f2bf(s);
    }
}
