// What every kernel file shares: bf16 kept as raw 16-bit patterns (so that no CUDA header is needed and NVRTC compiles
// the files alone), its conversions, and loads/stores of tensors that are bf16 or fp32 by a flag (LSE rows, scores).
// KernelCompiler hands this file to NVRTC under its own name, so `#include "bf16.cuh"` resolves there as it does for
// nvcc beside the .cu files.
#pragma once

typedef unsigned short bf16;

// NVRTC has no <math.h>: -INFINITY spelled out.
#define APB_NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float bf2f(bf16 b) { return __uint_as_float(((unsigned)b) << 16); }

// Round to nearest even, NaN kept quiet: the same rule as DTypes.FloatToBF16 on the host.
__device__ __forceinline__ bf16 f2bf(float f)
{
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}

// Two floats to a bf16 pair, lo in the low half, in one instruction (sm_80+): the same rounding as f2bf for every
// non-NaN value. The attention kernels pack P with it, 16,384 values per 128 x 128 tile: replacing f2bf there (and
// going from 2 to 3 stages, which alone changed nothing) took the Hopper kernel from 414 / 422 to 595.5 / 563.2
// TFLOP/s at 16K / 128K (docs/kernels/attention.md, v3).
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi)
{
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// The two bf16 of a 32-bit word (element 2i in the low half, 2i + 1 in the high) as floats, and two bf16 packed so.
__device__ __forceinline__ float bf_lo(unsigned w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf_hi(unsigned w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ unsigned bf_pack(bf16 lo, bf16 hi) { return (unsigned)lo | ((unsigned)hi << 16); }

// The max (MAX) or the sum of one float per thread over the block (blockDim a multiple of 32, scratch of 32 floats),
// every thread getting the result. It waits before writing scratch, so calls may follow one another; its barriers
// also publish the block's shared-memory writes made before the call.
template <bool MAX>
__device__ __forceinline__ float block_reduce(float v, float* scratch)
{
    for (int o = 16; o > 0; o >>= 1)
    {
        float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = MAX ? fmaxf(v, u) : v + u;
    }
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : (MAX ? APB_NEG_INF : 0.f);
    for (int o = 16; o > 0; o >>= 1)
    {
        float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = MAX ? fmaxf(v, u) : v + u;
    }
    return v;
}

// Element i of a tensor that is fp32 when f32 != 0, else bf16.
__device__ __forceinline__ float load_any(const void* p, long i, int f32)
{
    return f32 ? ((const float*)p)[i] : bf2f(((const bf16*)p)[i]);
}

__device__ __forceinline__ void store_any(void* p, long i, int f32, float v)
{
    if (f32) ((float*)p)[i] = v; else ((bf16*)p)[i] = f2bf(v);
}

// A shared-memory pointer as the 32-bit address PTX's shared-state instructions take.
__device__ __forceinline__ unsigned smem_u32(const void* p)
{
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// Programmatic dependent launch (sm_90+; both are no-ops on older GPUs and in a kernel launched without the attribute).
// The host launches every kernel of a file listed in CudaContext.ProgrammaticFiles with it, so that the next kernel of
// the stream is scheduled onto the SMs while this one runs instead of after it has drained; that hides most of a
// launch's latency, which is a large share of a decode step's ~290 small, dependent kernels. The contract for every
// kernel of such a file (Apb.Tests' ProgrammaticLaunchTests checks the source for it):
//   - pdl_launch_dependents() may come first: it only lets the next grid be scheduled once all of this grid's blocks
//     have run it; the next grid still waits for this one to finish (its own pdl_wait).
//   - pdl_wait() before the first read of anything an earlier kernel wrote, and before the first write of anything at
//     all (an earlier kernel may still be reading it). It returns once every earlier grid has finished and its writes
//     are visible. Only what no kernel ever writes (weights) may be read before it.
//   - every thread calls pdl_wait(), even one that returns early with nothing to do: a grid then ends only after the
//     grid before it has, so waiting on the one grid just before orders a kernel after every earlier one too.
__device__ __forceinline__ void pdl_launch_dependents()
{
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_wait()
{
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Both at a kernel's start: for kernels that read nothing before their inputs.
__device__ __forceinline__ void pdl_enter()
{
    pdl_launch_dependents();
    pdl_wait();
}

// One mma.sync.m16n8k16 (bf16 in, fp32 accumulate, sm_80+): c += A B. The fragment layouts (attention.cu's comment
// lists them) are the PTX ISA's; attention.cu's prefill and decode_mma.cu's decode both use it.
__device__ __forceinline__ void mma_bf16(float* c, unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0, unsigned b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
