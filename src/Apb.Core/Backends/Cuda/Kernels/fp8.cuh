// FP8 E4M3 for the KV cache of --kv-cache-dtype fp8 (docs/notes/kv-fp8-plan.md): conversions through PTX's cvt
// (sm_89 and later), so no cuda_fp8.h is needed. The format and its rounding are Fp8E4M3.cs's: round to nearest even,
// saturation at +-448, NaN kept. A cache row keeps one fp32 scale per 32 values (the group's largest magnitude / 448).
#pragma once
#include "bf16.cuh"

#define APB_FP8_GROUP 32
#define APB_FP8_MAX 448.f

// The e4m3 forms of cvt exist from sm_89 on. The files that include this header are compiled for every device, so
// older targets get a body that never runs instead (the host refuses fp8 there: CudaBackend.RequireFp8).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
#define APB_FP8_CVT 1
#else
#define APB_FP8_CVT 0
#endif

// One value to its code. cvt packs two: the first source goes to the upper byte, the second to the lower one.
__device__ __forceinline__ unsigned char f2e4m3(float x)
{
#if APB_FP8_CVT
    unsigned short r;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(0.f), "f"(x));
    return (unsigned char)(r & 0xffu);
#else
    return 0x7f;   // NaN: never reached
#endif
}

// Two codes (the low and high byte of w) to floats, exactly: every E4M3 value is an f16 value. The low byte becomes
// the low half of the f16 pair.
__device__ __forceinline__ void e4m3x2_to_f32(unsigned w, float& lo, float& hi)
{
#if APB_FP8_CVT
    unsigned short in = (unsigned short)(w & 0xffffu);
    unsigned h2;
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h2) : "h"(in));
    unsigned short a = (unsigned short)(h2 & 0xffffu), b = (unsigned short)(h2 >> 16);
    asm("cvt.f32.f16 %0, %1;" : "=f"(lo) : "h"(a));
    asm("cvt.f32.f16 %0, %1;" : "=f"(hi) : "h"(b));
#else
    lo = hi = __int_as_float(0x7fc00000);   // never reached
#endif
}

// Eight codes (8 bytes, in memory order) to floats, unscaled.
// An experiment's knob, off by default (APB_KERNEL_DEFINES="APB_FP8_BITS=1"; docs/kernels/decode-fp8.md): integer
// operations in place of cvt. A code's 7 magnitude bits shifted into an fp32's exponent and mantissa are the value times
// 2^-120 (a code of exponent 0 lands in fp32's denormals, which is the same rule), so one multiply by 2^120 without
// flush-to-zero gives the value exactly; the sign bit moves to bit 31. Differs from cvt only on the NaN codes.
#ifndef APB_FP8_BITS
#define APB_FP8_BITS 0
#endif
#if APB_FP8_BITS
__device__ __forceinline__ float e4m3_bits(unsigned w, int i)
{
    unsigned b = (w >> (8 * i)) & 0xffu;
    float x = __uint_as_float(((b & 0x7fu) << 20) | ((b & 0x80u) << 24)), r;
    asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(x), "f"(__uint_as_float(0x7b800000u)));   // x 2^120, denormals kept
    return r;
}
__device__ __forceinline__ void e4m3x8_to_f32(uint2 w, float f[8])
{
#pragma unroll
    for (int i = 0; i < 4; i++) { f[i] = e4m3_bits(w.x, i); f[4 + i] = e4m3_bits(w.y, i); }
}
#else
__device__ __forceinline__ void e4m3x8_to_f32(uint2 w, float f[8])
{
    e4m3x2_to_f32(w.x, f[0], f[1]);
    e4m3x2_to_f32(w.x >> 16, f[2], f[3]);
    e4m3x2_to_f32(w.y, f[4], f[5]);
    e4m3x2_to_f32(w.y >> 16, f[6], f[7]);
}
#endif

// A group's scale from its largest magnitude (fp32 division, as Fp8E4M3.RowScale): 1 for a group of zeros.
__device__ __forceinline__ float fp8_scale(float amax) { return amax == 0.f ? 1.f : __fdiv_rn(amax, APB_FP8_MAX); }

__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
