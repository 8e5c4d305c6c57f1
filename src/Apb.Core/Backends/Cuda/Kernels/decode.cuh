// What the split-KV decode kernels share (decode.cu's version 2, decode_mma.cu's version 3): the last step of a block,
// which turns the partial softmaxes of its W lane groups or warps into the split's partial per (query row, head) pair,
// in the format apb_decode_merge (decode.cu) reads.
#pragma once
#include "bf16.cuh"

// s_m, s_l: each of the W partials' running max (log2 units) and sum per pair; s_o: its output (unnormalized, scaled
// like s_l). Writes partO[(row * splits + split) * D + col] (the normalized output) and partLse[row * splits + split]
// (natural log), row = rowBase + query row x heads + head; a pair that saw no key gets 0 and -inf. The caller
// synchronizes the block after filling the arrays; THREADS threads share the pairs x D columns.
template <int W, int PM, int D, int THREADS>
__device__ __forceinline__ void decode_block_partial(const float (&s_m)[W][PM], const float (&s_l)[W][PM], const float (&s_o)[W][PM][D],
    int pairs, int g, int kh, int heads, long rowBase, int split, int splits, float* __restrict__ partO, float* __restrict__ partLse)
{
    for (int e = threadIdx.x; e < pairs * D; e += THREADS)
    {
        int p = e / D, col = e - p * D;
        int i = p / g, h = kh * g + (p - i * g);
        long row = rowBase + (long)i * heads + h;
        float mx = APB_NEG_INF;
        for (int w = 0; w < W; w++) mx = fmaxf(mx, s_m[w][p]);
        float sum = 0.f, acc = 0.f;
        if (mx != APB_NEG_INF)
            for (int w = 0; w < W; w++)
            {
                if (s_m[w][p] == APB_NEG_INF) continue;
                float wt = exp2f(s_m[w][p] - mx);
                sum = fmaf(s_l[w][p], wt, sum);
                acc = fmaf(s_o[w][p][col], wt, acc);
            }
        partO[(row * splits + split) * D + col] = sum > 0.f ? acc / sum : 0.f;
        if (col == 0) partLse[row * splits + split] = sum > 0.f ? (mx + log2f(sum)) * 0.6931471805599453f : APB_NEG_INF;
    }
}
