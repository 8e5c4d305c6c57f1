// Random fills for benchmarks and random-weight models: a counter-based hash (splitmix64) of (seed, stream, index), so any
// element is a pure function of its coordinates, the fill needs no state and the CPU reproduces it bit for bit
// (RandomWeights.Value). value = offset + (2u - 1) x scale with u uniform on [0, 1) in 24 bits, rounded to bf16 (nearest even).
// Every float op is spelled with an explicit rounding intrinsic so the compiler cannot contract it into an FMA.

#include "bf16.cuh"

typedef unsigned long long u64;

__device__ __forceinline__ u64 mix64(u64 z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

extern "C" __global__ void apb_fill_uniform_bf16(bf16* __restrict__ dst, long n, u64 key, float scale, float offset)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    {
        u64 h = mix64(key + (u64)i);
        float u = __fmul_rn((float)(unsigned)(h >> 40), 5.9604644775390625e-8f);
        dst[i] = f2bf(__fadd_rn(offset, __fmul_rn(__fadd_rn(__fadd_rn(u, u), -1.0f), scale)));
    }
}
