// Attention forward for Hopper (sm_90a only; attention.cu's mma.sync kernels serve every other GPU): the same contract
// as attention.cu (bf16 q/k/v/o, GQA by index, bottom-right causal alignment, fp32 online softmax, LSE out), built on
// the instructions that make an H100/H200 fast:
//  - wgmma (warpgroup MMA) for both products: S = Q K^T with Q and K read from shared memory, O += P V with P taken
//    from registers (the S accumulators turned into bf16 A fragments: wgmma's accumulator layout per warp is the
//    mma.sync m16n8 layout, and the register A operand has the m16k16 fragment layout, so no shuffle is needed).
//  - TMA (cp.async.bulk.tensor) for Q, K and V tiles, 128-byte swizzled (the layout wgmma's descriptors read without
//    bank conflicts), landing on mbarriers: a producer warp streams K/V tiles into a ring of stages while two consumer
//    warpgroups compute; a stage is refilled only after both consumers released it.
//  - Warp specialization with setmaxnreg: the producer warpgroup drops to 24 registers so each consumer thread can
//    hold its 64 x 128 S and O accumulators (2 x 64 fp32) without spilling.
// V is read through a transposed copy (vt: [kvHeads * D][Tk], made by apb_transpose_v before the attention kernel):
// then both products take their B operand K-major, through one kind of shared-memory descriptor. The copy costs one
// extra read and write of V (2 bytes x Tk x kvHeads x D each way) per call; its time was not measured on its own.
//
// Block: 3 warpgroups (384 threads). Warpgroup 0 = producer (one thread issues TMA), warpgroups 1 and 2 = consumers,
// 64 query rows each (a 128-row query tile per block). Grid: (query tiles, heads from h0), longest causal tiles first.
// Long keys in chunks (the host's choice, CudaBackend.Hopper.cs): one launch per chunk of chunkTiles key tiles, each
// block carrying its online-softmax state (O accumulators, row max and sums, fp32) from one launch to the next through
// `state`. Without chunks, the blocks running at once drift apart over a long K/V stream (block start times spread over
// the waves), so together they read all of a head's K and V at once: at 128K keys that is 64 MB, more than L2 holds,
// and ncu measured a 56 % L2 hit rate against 98.5 % at 16K (docs/kernels/attention.md, v5). A chunk bounds it. The
// host chunks non-causal calls past 32K keys (APB_ATTENTION_CHUNK_KEYS; causal calls gain nothing from it, v6).
// Overlap inside a consumer (FA3's intra-warpgroup pipelining): it issues S of tile j and then P V of tile j - 1, waits
// for S alone and runs tile j's softmax while that P V is on the tensor cores; O is rescaled once the P V is done.
// Across consumers: the two are independent, so one's softmax also runs while the other's products do. (Named-barrier
// ping-pong between them was measured slower here: v8 in docs/kernels/attention.md; the overlap above is v9.)
// Shared memory (D = 128): Q 32 KB + 3 stages x (K 32 KB + Vt 32 KB) = 224 KB of the 227 KB a block may have (the
// host reserves 1 KB more, for HOP_ROWSUM_MMA's ones); QK8's e4m3 Q and K tiles are half that: Q 16 KB, stages 48 KB.

#include "bf16.cuh"
#include "fp8.cuh"
#define HOP_BM 128      // query rows per block (2 consumer warpgroups x 64)
#define HOP_BN 128      // keys per K/V tile
#define HOP_STAGES 3    // tile j's stage is held until its P V (issued behind tile j + 1's S) is done; the third prefetches

// HOP_LAZY_RESCALE, 1 (the default) to rescale a warp's O accumulators and row sums only when some row's maximum grew
// by more than HOP_RESCALE_SLACK (log2 units) since the last rescale. Otherwise the rows keep their old maximum as the
// exponent's offset, so P may reach 2^SLACK (fine in bf16 and in fp32 sums), and the 64 multiplies of O and the two
// exp2 per row are skipped on most tiles: fewer non-tensor instructions per tile, for a kernel that a long call runs
// at the power limit. The result is the same softmax: O and l share the offset. Measured (docs/kernels/attention.md,
// v7): 128K causal 637 -> 655 TFLOP/s, non-causal 590 -> 601, the 128K prefill 10.28 -> 10.14 s, the same call.
#ifndef HOP_LAZY_RESCALE
#define HOP_LAZY_RESCALE 1
#endif
#ifndef HOP_RESCALE_SLACK
#define HOP_RESCALE_SLACK 8.0f
#endif
// HOP_ROWSUM_MMA, 1 to take the softmax's row sums off the CUDA cores: each P V k-step also issues a 64 x 8 x 16 wgmma of
// the same P fragments against 8 columns of ones (1 KB of shared memory, written once), so the tensor cores add the
// rows' sums into 4 accumulators per thread. That removes the 64 adds per thread and tile from the softmax (and the
// shuffles of the partial sums at the end) for 1/16 more tensor work on the P V side, and the sums are then of the bf16
// P the products used, not of the fp32 values before rounding. 0 (the default) keeps the sums in the softmax: 1 measured
// 1.6-3.7 % slower for bf16 and 1.3-1.9 % for QK8 (docs/kernels/attention.md, 2026-12-05).
#ifndef HOP_ROWSUM_MMA
#define HOP_ROWSUM_MMA 0
#endif
// HOP_Q_REGS, 1 to issue S = Q K^T with Q from registers (read once per block from the Q tile) instead of from shared
// memory: a 64 x 128 x 16 wgmma from shared memory reads 2 KB of Q and 4 KB of K in its ~64 clocks (262,144 FLOP at the
// ~4,096 a clock an SM's tensor cores do at the spec's 989 TFLOP/s; derived, not measured), 96 of the 128 bytes
// a clock the SM's shared memory delivers; from registers it reads the 4 KB of K alone. A tile's shared-memory reads per
// warpgroup go from 80 KB (Q 16, K 32, Vt 32) to 64 KB, for 32 more registers per consumer thread at d 128 (the 64 x 128
// Q slice: 8 k-steps x 4; ptxas still fits the kernel in its 168, no spills). 1 is the default: causal 16K / 64K / 128K
// at d 128 went 671 / 649 / 654 -> 712 / 664 / 668 TFLOP/s in one call, both orders (docs/kernels/attention.md, hopper v10).
// 0 reads Q from shared memory. QK8's S reads its e4m3 Q from shared memory either way.
#ifndef HOP_Q_REGS
#define HOP_Q_REGS 1
#endif
// HOP_STUDY_P_E4M3, 1 for an accuracy study of fp8 prefill attention (with elementwise.cu's APB_STUDY_FP8_QKV; never
// for serving): P rounded through e4m3 (no scale: the lazy rescale keeps P in [0, 2^8]) before its bf16 packing, what
// an e4m3 P V product would multiply. The row sums stay those of the unrounded P unless HOP_ROWSUM_MMA sums the
// products' P. 0 (the default) leaves P in bf16.
#ifndef HOP_STUDY_P_E4M3
#define HOP_STUDY_P_E4M3 0
#endif
#if HOP_STUDY_P_E4M3
__device__ __forceinline__ float study_e4m3(float x)
{
    float lo, hi;
    e4m3x2_to_f32(f2e4m3(x), lo, hi);
    return lo;
}
#endif


// A CUtensorMap as the driver encodes it: 128 opaque bytes, 64-byte aligned, passed by value (__grid_constant__).
struct __align__(64) TensorMap { unsigned long long opaque[16]; };


// ---- mbarriers (shared-memory arrive/wait objects; TMA completes "transaction bytes" on them)

__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" :: "r"(bar), "r"(count) : "memory");
}

__device__ __forceinline__ void mbar_expect_tx(unsigned bar, unsigned bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" :: "r"(bar), "r"(bytes) : "memory");
}

__device__ __forceinline__ void mbar_arrive(unsigned bar)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" :: "r"(bar) : "memory");
}

// Arrives on the barrier at the same shared-memory offset in block `rank` of this cluster (a pair kernel's peer). With
// the default semantics, as CUTLASS's cluster barrier arrives: the same release with .release.cluster spelled out made
// the cluster build 7-12 % slower than the default build instead of level or faster (bench/results/
// attention-cluster-20261205, calls 6 and 7; not profiled: likely a cluster-scope fence per tile in the warp that
// issues the warpgroup's next wgmma).
__device__ __forceinline__ void mbar_arrive_cluster(unsigned bar, unsigned rank)
{
    unsigned remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(bar), "r"(rank));
    asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];\n" :: "r"(remote) : "memory");
}

// Blocks until the phase with the given parity has completed.
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity)
{
    unsigned done;
    do
    {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done) : "r"(bar), "r"(parity) : "memory");
    } while (!done);
}

// One 2-D TMA box global -> shared, completing on bar. c0 = innermost coordinate (elements), c1 = row.
__device__ __forceinline__ void tma_load_2d(unsigned dst, const TensorMap* map, int c0, int c1, unsigned bar)
{
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n"
                 :: "r"(dst), "l"((unsigned long long)map), "r"(c0), "r"(c1), "r"(bar) : "memory");
}

// The same box into the same offset of every block in ctaMask (this cluster's ranks as bits), each completing the
// bytes on its own barrier at bar's offset.
__device__ __forceinline__ void tma_load_2d_multicast(unsigned dst, const TensorMap* map, int c0, int c1, unsigned bar,
                                                      unsigned short ctaMask)
{
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
                 " [%0], [%1, {%2, %3}], [%4], %5;\n"
                 :: "r"(dst), "l"((unsigned long long)map), "r"(c0), "r"(c1), "r"(bar), "h"(ctaMask) : "memory");
}

// ---- wgmma

// Shared-memory matrix descriptor for a K-major tile written by TMA with 128-byte swizzle: rows of 64 bf16 (128 B),
// 8-row swizzle atoms 1024 B apart (stride byte offset); the leading byte offset is unused for swizzled K-major tiles.
// A k-step of 16 elements inside the 64-wide row is a +32 B start address: the hardware applies the same address-based
// XOR swizzle TMA used when writing, so the offset composes (the atoms are 1024-byte aligned).
__device__ __forceinline__ unsigned long long sw128_desc(unsigned addr)
{
    return (unsigned long long)((addr & 0x3FFFFu) >> 4) | (1ull << 16) | ((unsigned long long)(1024 >> 4) << 32) | (1ull << 62);
}

// The same for rows of 64 bytes under TMA's 64-byte swizzle (QK8's e4m3 tiles at D = 64): 8-row atoms 512 B apart,
// swizzle mode 2 in bits 62-63.
__device__ __forceinline__ unsigned long long sw64_desc(unsigned addr)
{
    return (unsigned long long)((addr & 0x3FFFFu) >> 4) | (1ull << 16) | ((unsigned long long)(512 >> 4) << 32) | (2ull << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }

// 2^x on the special-function unit (-inf gives +0), without exp2f's extra range handling.
__device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// The operand lists below are long but mechanical: accumulator element (n8 block i, slot e) is register 4 i + e.
__device__ __forceinline__ void wgmma_m64n128k16_ss(float (&d)[16][4], unsigned long long descA, unsigned long long descB, int scaleD)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
                 : "l"(descA), "l"(descB), "r"(scaleD));
}

// S (64 x 128, fp32) += A (64 x 32 e4m3) x B (128 x 32 e4m3)^T, both from shared memory and K-major: fp8 wgmma takes
// no transpose immediates (QK8 below).
__device__ __forceinline__ void wgmma_m64n128k32_e4m3_ss(float (&d)[16][4], unsigned long long descA, unsigned long long descB, int scaleD)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1;\n}\n"
                 : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
                 : "l"(descA), "l"(descB), "r"(scaleD));
}

__device__ __forceinline__ void wgmma_m64n128k16_rs(float (&d)[16][4], const unsigned (&a)[4], unsigned long long descB, int scaleD = 1)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, {%64,%65,%66,%67}, %68, p, 1, 1, 0;\n}\n"
                 : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(descB), "r"(scaleD));
}

__device__ __forceinline__ void wgmma_m64n64k16_rs(float (&d)[8][4], const unsigned (&a)[4], unsigned long long descB)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, 0;\n}\n"
                 : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(descB), "r"(1));
}

// Pins accumulator registers in place around asynchronous wgmma: the compiler sees the wgmma asm "write" them when it
// is issued, so without this it could move reads of the results above wgmma.wait_group, or initial values below it.
template <int N>
__device__ __forceinline__ void fence_acc(float (&d)[N][4])
{
#pragma unroll
    for (int i = 0; i < N; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+f"(d[i][e]) :: "memory");
}

// The same for the registers of a wgmma's A operand (P, read from registers by P V until its wait_group).
template <int N>
__device__ __forceinline__ void fence_regs(unsigned (&a)[N][4])
{
#pragma unroll
    for (int i = 0; i < N; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+r"(a[i][e]) :: "memory");
}

// O (64 x 8) += P (registers) x ones: every column of d is the rows' sums of P (HOP_ROWSUM_MMA).
__device__ __forceinline__ void wgmma_m64n8k16_rs(float (&d)[1][4], const unsigned (&a)[4], unsigned long long descB)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %9, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0,%1,%2,%3}, {%4,%5,%6,%7}, %8, p, 1, 1, 0;\n}\n"
                 : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(descB), "r"(1));
}

template <int D>
__device__ __forceinline__ void wgmma_pv(float (&o)[D / 8][4], const unsigned (&a)[4], unsigned long long descB)
{
    if constexpr (D == 128) wgmma_m64n128k16_rs(o, a, descB);
    else wgmma_m64n64k16_rs(o, a, descB);
}

// Shared-memory layout of one block (byte offsets from a 1024-aligned base). Every TMA box is 64 bf16 wide (128 B, the
// 128-byte swizzle's limit), so a D-wide row is D / 64 boxes side by side in separate "column chunks".
// QK8: Q and K tiles hold e4m3 codes, a row of D bytes in one box (128- or 64-byte swizzle).
template <int D, bool QK8 = false>
struct HopperSmem
{
    static constexpr unsigned QRow = QK8 ? D : 128;           // bytes per row of one Q (or K) chunk
    static constexpr unsigned QChunk = HOP_BM * QRow;         // one 64-column chunk of the 128-row Q tile (QK8: all of it)
    static constexpr unsigned QBytes = QK8 ? QChunk : (D / 64) * QChunk;
    static constexpr unsigned KChunk = HOP_BN * QRow;         // one 64-column chunk of a 128-key K tile (QK8: all of it)
    static constexpr unsigned KBytes = QK8 ? KChunk : (D / 64) * KChunk;
    static constexpr unsigned VChunk = D * 128;               // one 64-key chunk of the D-row Vt tile
    static constexpr unsigned VBytes = (HOP_BN / 64) * VChunk;
    static constexpr unsigned StageBytes = KBytes + VBytes;
    // With HOP_ROWSUM_MMA, 8 rows of 64 bf16 ones (the row sums' B operand; 1024-aligned like every tile). The host
    // reserves the 1 KB either way (HopperSharedBytes), so the variant needs no host change.
    static constexpr unsigned Ones = QBytes + HOP_STAGES * StageBytes;
    // qFull, full[STAGES], empty[STAGES], then the persistent kernel's qEmpty and its item slot (8 bytes each; the host
    // reserves them for every kernel, HopperSharedBytes)
    static constexpr unsigned Barriers = Ones + (HOP_ROWSUM_MMA ? 1024 : 0);
    static constexpr unsigned Total = Barriers + 8 * (3 + 2 * HOP_STAGES);
};

// QK8 (apb_attention_hopper_qk8_d*): S = Q K^T in e4m3 from codes made by apb_qk8_quantize_rows (q: a scale per
// row and head, qScale [Tq][heads]) and apb_qk8_quantize_key_tiles (k: a scale per 128-key tile and KV head, kScale
// [tiles][kvHeads]); P V stays bf16. Each row's maximum is then kept in log2 units of the scaled scores (the factor
// changes with the tile's key scale), and so is a chunk's carried state (apb_attention_hopper_qk8_chunk_d*, the host's
// choice as for bf16; the merge below reads its maxima in their own unit). docs/notes/fp8-attention.md.
//
// PERSISTENT (apb_attention_hopper_persistent_d*): one block per SM walks (query tile, head) items until none is left,
// taking each from the global counter `next` (zeroed by the host before the launch): the items in the order a
// plain grid runs its blocks (head by head, the longest causal tiles first), so a block that finishes early takes the
// next long item and the last ones are short. The producer takes the next item as soon as the consumers hold the
// current Q in registers (qEmpty), writes its index into the item slot and loads its Q and first K/V stages while the
// consumers are still on the last tiles and the epilogue of the current one; the consumers read the index after qFull.
// The K/V ring runs on across items (stage and parity from the count of stages walked so far). -1 in the slot: done.
// The host's default for one-pass calls that do not run as pairs (the causal ones): on an H100, causal 4K / 8K / 16K
// ran +6-7.5 / +4.5 / +3.2-3.7 % against the plain grid, 32K-128K level (docs/kernels/attention.md, session 24).
template <int D, bool CHUNKED, bool QK8 = false, bool CLUSTER = false, bool PERSISTENT = false>
__device__ __forceinline__ void attention_hopper(const TensorMap* tmQ, const TensorMap* tmK, const TensorMap* tmV,
                                                 bf16* __restrict__ o, void* lse, int lseF32, int Tq, int Tk, int heads,
                                                 int kvHeads, long oStride, float scale, int causal, int h0, int chunkTiles,
                                                 int chunk, float* __restrict__ state, const float* __restrict__ qScale = nullptr,
                                                 const float* __restrict__ kScale = nullptr, int* __restrict__ next = nullptr)
{
    static_assert(!QK8 || D == 64 || D == 128, "QK8 takes head dims 64 and 128");
    static_assert(!CLUSTER || (!CHUNKED && !QK8), "the pair kernels are bf16 and one pass");
    static_assert(!PERSISTENT || (!CHUNKED && !QK8 && !CLUSTER), "the persistent kernel is bf16 and one pass");
    using L = HopperSmem<D, QK8>;
    extern __shared__ unsigned char smraw[];
    // TMA's 128-byte swizzle and the wgmma descriptors both assume 1024-byte aligned tiles (the host adds 1 KB of slack).
    const unsigned base = (smem_u32(smraw) + 1023u) & ~1023u;
    const unsigned qFull = base + L::Barriers;
    auto full = [&](int s) { return base + L::Barriers + 8u * (1 + s); };
    auto empty = [&](int s) { return base + L::Barriers + 8u * (1 + HOP_STAGES + s); };
    const unsigned qEmpty = base + L::Barriers + 8u * (1 + 2 * HOP_STAGES), itemSlot = qEmpty + 8u;
    auto kTile = [&](int s) { return base + L::QBytes + (unsigned)s * L::StageBytes; };
    auto vTile = [&](int s) { return kTile(s) + L::KBytes; };

    // The warpgroup index through a shuffle: ptxas then knows it is uniform across the warp, so the role branches and the
    // loops below are not "divergent paths" around wgmma (where it would serialize every wgmma: warning C7518).
    const int wg = __shfl_sync(0xffffffffu, (int)(threadIdx.x >> 7), 0);
    // The block's (query tile, head): the longest causal rows first, they set the grid's tail. The persistent kernel
    // sets these per item (below); every other kernel has one item, its block's.
    int qb = gridDim.x - 1 - blockIdx.x;
    int h = h0 + blockIdx.y, kh = h / (heads / kvHeads);
    const int shift = Tk - Tq;
    int m0 = qb * HOP_BM;
    const int qTilesAll = (Tq + HOP_BM - 1) / HOP_BM, items = qTilesAll * heads;   // the persistent kernel's items

    // Keys a query tile needs: up to the causal limit of its last row (all of Tk without a mask); none for a tile past
    // the last row (the block the host adds to make the grid even).
    auto keyEndOf = [&](int qTile) {
        const int first = qTile * HOP_BM;
        if (first >= Tq) return 0;
        if (!causal) return Tk;
        return max(0, min(Tk, min(first + HOP_BM - 1, Tq - 1) + shift + 1));
    };
    int keyEnd = keyEndOf(qb);
    // A chunked launch (chunkTiles > 0) takes key tiles [jBegin, jEnd) of the block's: it resumes the online softmax
    // from the state a launch before it stored, and stores it again unless the block's last tile is in this chunk.
    const int allTiles = (keyEnd + HOP_BN - 1) / HOP_BN;
    int jBegin = 0, jEnd = allTiles;
    if constexpr (CHUNKED)
    {
        jBegin = chunk * chunkTiles;
        jEnd = min(allTiles, jBegin + chunkTiles);
        if (chunk > 0 && jBegin >= jEnd) return;   // finished in an earlier chunk (uniform across the block)
    }
    int tiles = jEnd - jBegin;
    // The pair kernels: this block's rank in its pair (the cluster is 2 blocks along x) and the stages both walk: the
    // longer of the two key ranges (the peer is the adjacent query tile of the same head).
    const unsigned rank = CLUSTER ? (blockIdx.x & 1u) : 0u;
    int stages = CLUSTER ? max(tiles, (keyEndOf(gridDim.x - 1 - (blockIdx.x ^ 1u)) + HOP_BN - 1) / HOP_BN) : tiles;
    // Through a shuffle, as wg below, so that ptxas can see the state branches are uniform across the warp.
    const bool resume = CHUNKED && __shfl_sync(0xffffffffu, jBegin, 0) > 0;
    const bool lastChunk = !CHUNKED || __shfl_sync(0xffffffffu, jEnd == allTiles ? 1 : 0, 0) != 0;

#if HOP_ROWSUM_MMA
    // Ones for the row-sum products: every byte pair is bf16 1.0, so the swizzle a descriptor applies reads ones too.
    for (unsigned i = threadIdx.x; i < 256; i += blockDim.x)
        asm volatile("st.shared.u32 [%0], %1;\n" :: "r"(base + L::Ones + 4 * i), "r"(0x3F803F80u) : "memory");
    // Generic-proxy stores read by wgmma (the async proxy) need this fence before the barrier below.
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
    if (threadIdx.x == 0)
    {
        mbar_init(qFull, 1);
        for (int s = 0; s < HOP_STAGES; s++) { mbar_init(full(s), 1); mbar_init(empty(s), CLUSTER ? 4 : 2); }
        if constexpr (PERSISTENT) mbar_init(qEmpty, 256);   // every consumer thread, once it is done with Q
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    // With a peer, its barriers must be initialized before this block's copies or arrivals reach them.
    if constexpr (CLUSTER)
        asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
    else
        __syncthreads();

    if (wg == 0)
    {
        // Producer. All four warps lower their register budget (setmaxnreg is warpgroup-wide); one thread issues.
        asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n" ::: "memory");
        // The loads every producer issues: the Q tile of head hh from row0 on qFull; the ring's slot for the q-th stage a
        // block walks (waited for from the second lap on, its bytes expected: with a peer, its half lands here too); and
        // K/V tile j of KV head kvh into a slot, without a peer (the pair kernels multicast instead, below).
        auto issueQ = [&](int hh, int row0) {
            mbar_expect_tx(qFull, L::QBytes);
            if constexpr (QK8) tma_load_2d(base, tmQ, hh * D, row0, qFull);
            else for (int c = 0; c < D / 64; c++) tma_load_2d(base + c * L::QChunk, tmQ, hh * D + c * 64, row0, qFull);
        };
        auto claimStage = [&](unsigned q) {
            const int s = (int)(q % HOP_STAGES);
            if (q >= HOP_STAGES) mbar_wait(empty(s), ((q / HOP_STAGES) - 1) & 1);
            mbar_expect_tx(full(s), L::StageBytes);
            return s;
        };
        auto issueKV = [&](int s, int j, int kvh) {
            if constexpr (QK8) tma_load_2d(kTile(s), tmK, kvh * D, j * HOP_BN, full(s));
            else for (int c = 0; c < D / 64; c++) tma_load_2d(kTile(s) + c * L::KChunk, tmK, kvh * D + c * 64, j * HOP_BN, full(s));
            for (int c = 0; c < HOP_BN / 64; c++) tma_load_2d(vTile(s) + c * L::VChunk, tmV, j * HOP_BN + c * 64, kvh * D, full(s));
        };
        if constexpr (PERSISTENT)
        {
            if (threadIdx.x == 0)
            {
                unsigned walked = 0;   // stages of earlier items: the ring's position
                for (int i = 0;; i++)
                {
                    if (i > 0) mbar_wait(qEmpty, (i - 1) & 1);   // the consumers are done with the last item's Q
                    const int w = atomicAdd(next, 1);
                    asm volatile("st.shared.s32 [%0], %1;\n" :: "r"(itemSlot), "r"(w < items ? w : -1) : "memory");
                    if (w >= items) { mbar_arrive(qFull); break; }   // the arrival releases the slot's -1
                    const int iq = qTilesAll - 1 - w % qTilesAll, ih = w / qTilesAll, ikh = ih / (heads / kvHeads);
                    const int n = (keyEndOf(iq) + HOP_BN - 1) / HOP_BN;
                    if (n > 0) issueQ(ih, iq * HOP_BM);
                    else mbar_arrive(qFull);   // no keys: the rows' output is zero, and there is no Q to load
                    for (int jj = 0; jj < n; jj++) issueKV(claimStage(walked + (unsigned)jj), jj, ikh);
                    walked += (unsigned)n;
                }
            }
            return;
        }
        if (threadIdx.x == 0 && stages > 0) // no copy may still be in flight when the block exits
        {
            if (tiles > 0) issueQ(h, m0);
            for (int jj = 0; jj < stages; jj++)
            {
                const int s = claimStage((unsigned)jj), j = jBegin + jj;
                if constexpr (CLUSTER)
                {
                    // Boxes K 0 .. D/64 - 1, then Vt 0, 1: this block issues every other one, into both blocks.
#pragma unroll
                    for (int b = 0; b < D / 64 + HOP_BN / 64; b++)
                    {
                        if ((unsigned)(b & 1) != rank) continue;
                        if (b < D / 64) tma_load_2d_multicast(kTile(s) + b * L::KChunk, tmK, kh * D + b * 64, j * HOP_BN, full(s), 3);
                        else
                        {
                            const int c = b - D / 64;
                            tma_load_2d_multicast(vTile(s) + c * L::VChunk, tmV, j * HOP_BN + c * 64, kh * D, full(s), 3);
                        }
                    }
                }
                else issueKV(s, j, kh);
            }
            // With a peer: wait until both blocks' consumers released the last use of every stage, so that no peer
            // arrival or copy reaches this block's shared memory after it exits.
            if constexpr (CLUSTER)
                for (int jj = max(stages, HOP_STAGES); jj < stages + HOP_STAGES; jj++)
                    mbar_wait(empty(jj % HOP_STAGES), ((jj / HOP_STAGES) - 1) & 1);
        }
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n" ::: "memory");
    const int cw = wg - 1;                              // consumer warpgroup: rows m0 + 64 cw ...
    const int tid = threadIdx.x & 127, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    // The persistent kernel's items, one per pass; every other kernel runs the body once. walked: the K/V ring's
    // position (stages of earlier items; 0 for one item, so those kernels index the ring as before). The body is left
    // at the function's indentation: it is the one-item code the other kernels were measured with, unchanged but for
    // the ring position.
    unsigned walked = 0;
    for (int item = 0;; item++)
    {
    if constexpr (PERSISTENT)
    {
        mbar_wait(qFull, item & 1);
        int w;
        asm volatile("ld.shared.s32 %0, [%1];\n" : "=r"(w) : "r"(itemSlot) : "memory");
        w = __shfl_sync(0xffffffffu, w, 0);   // uniform, as ptxas must see it around wgmma
        if (w < 0) break;
        qb = qTilesAll - 1 - w % qTilesAll; h = w / qTilesAll; kh = h / (heads / kvHeads); m0 = qb * HOP_BM;
        keyEnd = keyEndOf(qb);
        tiles = stages = (keyEnd + HOP_BN - 1) / HOP_BN;
    }
    const int wgRow0 = m0 + cw * 64;
    const int rA = wgRow0 + warp * 16 + g, rB = rA + 8;
    // This warpgroup's own key range: its last row's causal limit (it still takes part in every stage's release).
    int myEnd = keyEnd;
    if (causal) myEnd = max(0, min(Tk, min(wgRow0 + 63, Tq - 1) + shift + 1));
    const int myTiles = (myEnd + HOP_BN - 1) / HOP_BN;

    float oacc[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) { oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f; }
    float mA = APB_NEG_INF, mB = APB_NEG_INF, lA = 0.f, lB = 0.f;
#if HOP_ROWSUM_MMA
    float lacc[1][4] = {{0.f, 0.f, 0.f, 0.f}};   // columns 2t, 2t + 1 of rows rA (0, 1) and rB (2, 3): the whole rows' sums
    const unsigned long long onesDesc = sw128_desc(base + L::Ones);
#endif
    const float sl2 = scale * 1.4426950408889634f;
    // The rows' maxima times mu are log2 units: bf16 keeps them in units of S, QK8 already in log2 units (softmax below)
    const float mu = QK8 ? 1.f : sl2;
    const unsigned qBase = base + (unsigned)cw * 64 * L::QRow;   // this warpgroup's 64 rows inside each Q chunk
    // QK8: the rows' q scales, folded with the softmax scale into each tile's factor (with the tile's k scale)
    const float sqA = QK8 && rA < Tq ? qScale[(long)rA * heads + h] : 1.f;
    const float sqB = QK8 && rB < Tq ? qScale[(long)rB * heads + h] : 1.f;

    // A chunk's state: per consumer thread its O accumulators, then mA, mB, lA, lB (lA and lB are this thread's share
    // of the row sums, as the loop keeps them), element e of thread i at e x 256 + i (coalesced). The chunk runs from a
    // fresh state like a one-pass call and merges the carried one after its loop: loading it into the accumulators
    // before the loop made ptxas serialize the chunk kernel's wgmma (C7515; docs/kernels/attention.md, v5).
    constexpr int SW = D / 2 + 4;
    float* st = CHUNKED ? state + ((long)blockIdx.y * gridDim.x + blockIdx.x) * (256L * SW) + cw * 128 + tid : nullptr;

    // P of tile j - 1 (bf16 A fragments, offset by its rows' maxima) waits in pa for its P V, which is issued right
    // behind tile j's S; tile j's softmax then runs while that P V is on the tensor cores. The loop body is the same for
    // every tile after the first (peeled): a wgmma under a branch, or a wait_group whose count depends on a branch,
    // makes ptxas serialize every product (C7514: 490 TFLOP/s against 665, docs/kernels/attention.md v9).
    unsigned pa[HOP_BN / 16][4];
    float cA = 1.f, cB = 1.f;   // O's rescale for the tile the softmax just saw (when it returned true)
    // Masks S, moves the rows' maxima (lazily), turns S into P in place (fp32) and adds the row sums. fA / fB turn the
    // row's S into log2 units of the scaled scores, x = S f, P = 2^(x - m): sl2 for bf16; for QK8 sl2 x the row's q
    // scale x the tile's k scale, which changes with the tile, so QK8 keeps the maxima mA, mB in those log2 units while
    // bf16 keeps them in units of S (mu, the maxima's factor to log2 units: 1 or sl2). Each kernel's arithmetic is the
    // one it was measured with: bf16's maxima meet sl2 where they are used (b1003e2's log2 maxima for both cost bf16
    // 3.6-4.8 %, docs/kernels/attention.md); the factors of 1 (QK8's mu, bf16's q and k scales) fold away.
    auto softmax = [&](float (&sacc)[HOP_BN / 8][4], int n0, float fA, float fB) -> bool {
        bool needMask = n0 + HOP_BN > Tk || (causal && n0 + HOP_BN - 1 > wgRow0 + shift);
        if (needMask)
        {
#pragma unroll
            for (int nb = 0; nb < HOP_BN / 8; nb++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                {
                    int key = n0 + nb * 8 + 2 * t + (e & 1);
                    int row = e < 2 ? rA : rB;
                    if (key >= Tk || (causal && key > row + shift)) sacc[nb][e] = APB_NEG_INF;
                }
        }
        float tA = APB_NEG_INF, tB = APB_NEG_INF;
#pragma unroll
        for (int nb = 0; nb < HOP_BN / 8; nb++)
        {
            tA = fmaxf(tA, fmaxf(sacc[nb][0], sacc[nb][1]));
            tB = fmaxf(tB, fmaxf(sacc[nb][2], sacc[nb][3]));
        }
        tA = fmaxf(tA, __shfl_xor_sync(0xffffffffu, tA, 1)); tA = fmaxf(tA, __shfl_xor_sync(0xffffffffu, tA, 2));
        tB = fmaxf(tB, __shfl_xor_sync(0xffffffffu, tB, 1)); tB = fmaxf(tB, __shfl_xor_sync(0xffffffffu, tB, 2));
        if constexpr (QK8) { tA *= fA; tB *= fB; }   // the factors are positive: -inf stays -inf
        bool rescale = !HOP_LAZY_RESCALE
            || __any_sync(0xffffffffu, (tA - mA) * mu > HOP_RESCALE_SLACK || (tB - mB) * mu > HOP_RESCALE_SLACK);
        if (rescale)
        {
            float nA = fmaxf(mA, tA), nB = fmaxf(mB, tB);
            float oA = nA == APB_NEG_INF ? 0.f : nA * mu, oB = nB == APB_NEG_INF ? 0.f : nB * mu;
            cA = fast_exp2(mA * mu - oA); cB = fast_exp2(mB * mu - oB);
            mA = nA; mB = nB;
#if !HOP_ROWSUM_MMA
            lA *= cA; lB *= cB;
#endif
        }
        const float offA = mA == APB_NEG_INF ? 0.f : mA * mu, offB = mB == APB_NEG_INF ? 0.f : mB * mu;
#pragma unroll
        for (int nb = 0; nb < HOP_BN / 8; nb++)
        {
            sacc[nb][0] = fast_exp2(sacc[nb][0] * fA - offA);
            sacc[nb][1] = fast_exp2(sacc[nb][1] * fA - offA);
            sacc[nb][2] = fast_exp2(sacc[nb][2] * fB - offB);
            sacc[nb][3] = fast_exp2(sacc[nb][3] * fB - offB);
#if !HOP_ROWSUM_MMA
            lA += sacc[nb][0] + sacc[nb][1];
            lB += sacc[nb][2] + sacc[nb][3];
#endif
        }
        return rescale;
    };
    // QK8: tile j's key scale, loaded before the loop waits for the tile, so that its latency hides under the wait and
    // the product (the softmax folds it in).
    auto keyScale = [&](int j) -> float {
        if constexpr (QK8) return kScale[(long)j * kvHeads + kh];
        else return 1.f;
    };
    // P to bf16 A fragments: k-step kb (16 keys) = n8 blocks 2 kb and 2 kb + 1. The fence keeps the packing here, before
    // the next wgmma.fence (left to itself the compiler may sink it below, next to the P V that reads it: C7519).
    auto pack = [&](float (&sacc)[HOP_BN / 8][4]) {
#if HOP_STUDY_P_E4M3
#pragma unroll
        for (int nb = 0; nb < HOP_BN / 8; nb++)
#pragma unroll
            for (int e = 0; e < 4; e++) sacc[nb][e] = study_e4m3(sacc[nb][e]);
#endif
#pragma unroll
        for (int kb = 0; kb < HOP_BN / 16; kb++)
        {
            pa[kb][0] = pack_bf16(sacc[2 * kb][0], sacc[2 * kb][1]);
            pa[kb][1] = pack_bf16(sacc[2 * kb][2], sacc[2 * kb][3]);
            pa[kb][2] = pack_bf16(sacc[2 * kb + 1][0], sacc[2 * kb + 1][1]);
            pa[kb][3] = pack_bf16(sacc[2 * kb + 1][2], sacc[2 * kb + 1][3]);
        }
        fence_regs(pa);
    };
#if HOP_Q_REGS
    // This thread's A fragments of the warpgroup's 64 Q rows, k-step kk = columns 16 kk ...: the mma m16k16 layout
    // (rows g and g + 8 of the warp's 16; columns 2t, 2t + 1 and 2t + 8, 2t + 9), read from the swizzled tile. In a
    // 128-byte row the 16-byte unit u sits at u ^ (row & 7); row & 7 is g here (the warp's and warpgroup's row offsets
    // are multiples of 8). Loaded once the Q tile has landed (below).
    unsigned qa[D / 16][4];
    auto loadQ = [&]() {
        const unsigned r0 = qBase + (unsigned)(warp * 16 + g) * 128u, r1 = r0 + 8u * 128u;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
        {
            const unsigned c = (unsigned)(kk >> 2) * L::QChunk, u = (unsigned)(kk & 3) * 2u;
            const unsigned lo = ((u ^ (unsigned)g) << 4) + 4u * t, hi = (((u + 1u) ^ (unsigned)g) << 4) + 4u * t;
            asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(qa[kk][0]) : "r"(r0 + c + lo) : "memory");
            asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(qa[kk][1]) : "r"(r1 + c + lo) : "memory");
            asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(qa[kk][2]) : "r"(r0 + c + hi) : "memory");
            asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(qa[kk][3]) : "r"(r1 + c + hi) : "memory");
        }
    };
#endif
    auto issueS = [&](float (&sacc)[HOP_BN / 8][4], int stage) {
        if constexpr (QK8)
        {
            // One row of D e4m3 codes per Q or K row: k-steps of 32 codes are 32 bytes apart inside it.
#pragma unroll
            for (int kk = 0; kk < D / 32; kk++)
            {
                const unsigned off = (unsigned)kk * 32u;
                if constexpr (D == 128) wgmma_m64n128k32_e4m3_ss(sacc, sw128_desc(qBase + off), sw128_desc(kTile(stage) + off), kk > 0 ? 1 : 0);
                else wgmma_m64n128k32_e4m3_ss(sacc, sw64_desc(qBase + off), sw64_desc(kTile(stage) + off), kk > 0 ? 1 : 0);
            }
        }
        else
        {
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++)
            {
                unsigned off = (unsigned)(kk & 3) * 32u;
#if !HOP_Q_REGS
                unsigned long long da = sw128_desc(qBase + (unsigned)(kk >> 2) * L::QChunk + off);
#endif
                unsigned long long db = sw128_desc(kTile(stage) + (unsigned)(kk >> 2) * L::KChunk + off);
#if HOP_Q_REGS
                wgmma_m64n128k16_rs(sacc, qa[kk], db, kk > 0 ? 1 : 0);
#else
                wgmma_m64n128k16_ss(sacc, da, db, kk > 0 ? 1 : 0);
#endif
            }
        }
        wgmma_commit();
    };
    auto issuePv = [&](int stage) {
#pragma unroll
        for (int kb = 0; kb < HOP_BN / 16; kb++)
        {
            wgmma_pv<D>(oacc, pa[kb], sw128_desc(vTile(stage) + (unsigned)(kb >> 2) * L::VChunk + (unsigned)(kb & 3) * 32u));
#if HOP_ROWSUM_MMA
            wgmma_m64n8k16_rs(lacc, pa[kb], onesDesc);
#endif
        }
        wgmma_commit();
        fence_regs(pa);   // pa is read until the wait: nothing may write it above here
    };

    // A stage is free for the producer once every consumer warpgroup that reads it let go (with a peer: the peer's too,
    // since its producer writes into both blocks).
    auto release = [&](int stage) {
        mbar_arrive(empty(stage));
        if constexpr (CLUSTER) mbar_arrive_cluster(empty(stage), rank ^ 1u);
    };
    // This warpgroup's tiles are a prefix of the launch's (causal: the other consumer may have one more).
    const int mine = max(0, min(tiles, myTiles - jBegin));
    if (!PERSISTENT && tiles > 0) mbar_wait(qFull, 0);
    // The ring position of this item's tile jj: stage and phase parity.
    auto stageOf = [&](int jj) { return (int)((walked + (unsigned)jj) % HOP_STAGES); };
    auto parityOf = [&](int jj) { return ((walked + (unsigned)jj) / HOP_STAGES) & 1u; };
    if constexpr (PERSISTENT)
        if (mine <= 0) mbar_arrive(qEmpty);   // no Q to read: the producer may load the next
    if (mine > 0)
    {
#if HOP_Q_REGS
        if constexpr (!QK8) loadQ();
        if constexpr (PERSISTENT) mbar_arrive(qEmpty);   // this thread's Q is in registers
#endif
        {
            float sacc[HOP_BN / 8][4];
            const float sk = keyScale(jBegin);
            const int s0 = stageOf(0);
            mbar_wait(full(s0), parityOf(0));
            fence_acc(sacc);
            wgmma_fence();
            issueS(sacc, s0);
            wgmma_wait0();
            fence_acc(sacc);
            // O is still zero: nothing to rescale
            softmax(sacc, jBegin * HOP_BN, sl2 * sqA * sk, sl2 * sqB * sk);
            pack(sacc);
        }
        for (int jj = 1; jj < mine; jj++)
        {
            const int s = stageOf(jj), ps = stageOf(jj - 1);
            float sacc[HOP_BN / 8][4];
            const float sk = keyScale(jBegin + jj);
            mbar_wait(full(s), parityOf(jj));
            fence_acc(sacc);
            fence_acc(oacc);
#if HOP_ROWSUM_MMA
            fence_acc(lacc);
#endif
            wgmma_fence();
            issueS(sacc, s);
            issuePv(ps);
            wgmma_wait1();   // S_j; P V of tile j - 1 may still run
            fence_acc(sacc);
            const bool rescale = softmax(sacc, (jBegin + jj) * HOP_BN, sl2 * sqA * sk, sl2 * sqB * sk);
            wgmma_wait0();
            fence_acc(oacc);
#if HOP_ROWSUM_MMA
            fence_acc(lacc);
#endif
            if (tid == 0) release(ps);
            if (rescale)
            {
#pragma unroll
                for (int i = 0; i < D / 8; i++) { oacc[i][0] *= cA; oacc[i][1] *= cA; oacc[i][2] *= cB; oacc[i][3] *= cB; }
#if HOP_ROWSUM_MMA
                lacc[0][0] *= cA; lacc[0][1] *= cA; lacc[0][2] *= cB; lacc[0][3] *= cB;
#endif
            }
            pack(sacc);
        }
        const int ls = stageOf(mine - 1);
        fence_acc(oacc);
#if HOP_ROWSUM_MMA
        fence_acc(lacc);
#endif
        wgmma_fence();
        issuePv(ls);
        wgmma_wait0();
        fence_acc(oacc);
#if HOP_ROWSUM_MMA
        fence_acc(lacc);
#endif
        if (tid == 0) release(ls);
#if !HOP_Q_REGS
        if constexpr (PERSISTENT) mbar_arrive(qEmpty);   // the last S has read Q
#endif
    }
    // Tiles past this warpgroup's causal range: it still releases every stage (the producer waits for both consumers;
    // with a peer, for the pair's longer range).
    for (int jj = mine; jj < stages; jj++)
    {
        const int s = stageOf(jj);
        mbar_wait(full(s), parityOf(jj));
        if (tid == 0) release(s);
    }

#if HOP_ROWSUM_MMA
    // The whole rows' sums (every thread of a row holds them), where the loop above keeps a quarter share per thread:
    // the carried state and the end below see whole sums.
    lA = lacc[0][0]; lB = lacc[0][2];
#endif
    if (resume)
    {
        // Two partial softmaxes of the same rows: rescale both to the larger max (log2 units, through mu), then add.
        float pA = st[(D / 2) * 256], pB = st[(D / 2 + 1) * 256];
        float nA = fmaxf(mA, pA), nB = fmaxf(mB, pB);
        float offA = nA == APB_NEG_INF ? 0.f : nA * mu, offB = nB == APB_NEG_INF ? 0.f : nB * mu;
        float cA = fast_exp2(mA * mu - offA), cB = fast_exp2(mB * mu - offB);
        float qA = fast_exp2(pA * mu - offA), qB = fast_exp2(pB * mu - offB);
#pragma unroll
        for (int i = 0; i < D / 8; i++)
        {
            oacc[i][0] = oacc[i][0] * cA + st[(4 * i) * 256] * qA;
            oacc[i][1] = oacc[i][1] * cA + st[(4 * i + 1) * 256] * qA;
            oacc[i][2] = oacc[i][2] * cB + st[(4 * i + 2) * 256] * qB;
            oacc[i][3] = oacc[i][3] * cB + st[(4 * i + 3) * 256] * qB;
        }
        lA = lA * cA + st[(D / 2 + 2) * 256] * qA;
        lB = lB * cB + st[(D / 2 + 3) * 256] * qB;
        mA = nA; mB = nB;
    }
    if (!lastChunk)
    {
#pragma unroll
        for (int i = 0; i < D / 8; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) st[(4 * i + e) * 256] = oacc[i][e];
        st[(D / 2) * 256] = mA; st[(D / 2 + 1) * 256] = mB; st[(D / 2 + 2) * 256] = lA; st[(D / 2 + 3) * 256] = lB;
        return;
    }

#if !HOP_ROWSUM_MMA
    lA += __shfl_xor_sync(0xffffffffu, lA, 1); lA += __shfl_xor_sync(0xffffffffu, lA, 2);
    lB += __shfl_xor_sync(0xffffffffu, lB, 1); lB += __shfl_xor_sync(0xffffffffu, lB, 2);
#endif
    float iA = lA > 0.f ? 1.f / lA : 0.f, iB = lB > 0.f ? 1.f / lB : 0.f;
    if (rA < Tq)
    {
        bf16* out = o + (long)rA * oStride + (long)h * D + 2 * t;
#pragma unroll
        for (int i = 0; i < D / 8; i++) *(unsigned*)(out + i * 8) = pack_bf16(oacc[i][0] * iA, oacc[i][1] * iA);
        if (lse != 0 && t == 0) store_any(lse, (long)rA * heads + h, lseF32, lA > 0.f ? (QK8 ? mA * 0.6931471805599453f : mA * scale) + logf(lA) : APB_NEG_INF);
    }
    if (rB < Tq)
    {
        bf16* out = o + (long)rB * oStride + (long)h * D + 2 * t;
#pragma unroll
        for (int i = 0; i < D / 8; i++) *(unsigned*)(out + i * 8) = pack_bf16(oacc[i][2] * iB, oacc[i][3] * iB);
        if (lse != 0 && t == 0) store_any(lse, (long)rB * heads + h, lseF32, lB > 0.f ? (QK8 ? mB * 0.6931471805599453f : mB * scale) + logf(lB) : APB_NEG_INF);
    }
    if constexpr (!PERSISTENT) break;
    walked += (unsigned)stages;
    }
}

// The entry points per head dim: one pass over all keys; the same as clusters of two blocks that share their K/V tiles
// (below); the same as a persistent grid (one block per SM taking items from a counter, `next`: PERSISTENT above; the
// host's choice, CudaBackend.AttentionPersistent); and one chunk of chunkTiles key tiles with its state carried through
// `state` (one launch per chunk). All but the persistent one take the same arguments, so the host builds one list.
//
// The pair kernels (apb_attention_hopper_pair_d*; the host's choice, CudaBackend.AttentionPairs, non-causal calls by default):
// clusters of 2 blocks, adjacent query tiles of one head, whose producers each load half of a stage's TMA boxes and
// multicast them into both blocks' shared memory, so the pair asks L2 for half the K/V bytes. Why: a block reads
// 64 KB of K/V per 128-key tile for 8.4 MFLOP, so at ~660 TFLOP/s the SMs pull ~5 TB/s from L2, and the kernel runs at
// the board's power limit (bench/results/attention-sustained-20261205). Both blocks walk the pair's longer key range
// (causal: one tile more for the later query tile; the other only waits for and releases that stage), a stage is
// refilled only after all four consumer warpgroups of the pair released it (each releases its own block's stage and
// the peer's), and a producer waits out its last stages before it exits, so no peer arrives on a block that has left.
// The host launches an even number of blocks along the query tiles for every one-pass call (an empty block when their
// count is odd: it still loads and releases its half of the pair's stages). Measured on an H100 as the compile-time
// knob HOP_CLUSTER (the same code; docs/kernels/attention.md, 2026-12-05, session 23; 144 of 144 attention/ GPU tests):
// non-causal +2.1 to +4.5 % at 16K and 32K, causal +2.5 % at 16K, -2 % at 32K, level at 64K and 128K.
#define HOP_ENTRIES(D)                                                                                                  \
extern "C" __global__ void __launch_bounds__(384, 1)                                                                    \
apb_attention_hopper_d##D(const __grid_constant__ TensorMap tmQ, const __grid_constant__ TensorMap tmK,                 \
    const __grid_constant__ TensorMap tmV, bf16* o, void* lse, int lseF32, int Tq, int Tk, int heads, int kvHeads,      \
    long oStride, float scale, int causal, int h0, int chunkTiles, int chunk, float* state)                             \
{ attention_hopper<D, false>(&tmQ, &tmK, &tmV, o, lse, lseF32, Tq, Tk, heads, kvHeads, oStride, scale, causal, 0, 0, 0, nullptr); } \
extern "C" __global__ void __launch_bounds__(384, 1) __cluster_dims__(2, 1, 1)                                          \
apb_attention_hopper_pair_d##D(const __grid_constant__ TensorMap tmQ, const __grid_constant__ TensorMap tmK,            \
    const __grid_constant__ TensorMap tmV, bf16* o, void* lse, int lseF32, int Tq, int Tk, int heads, int kvHeads,      \
    long oStride, float scale, int causal, int h0, int chunkTiles, int chunk, float* state)                             \
{ attention_hopper<D, false, false, true>(&tmQ, &tmK, &tmV, o, lse, lseF32, Tq, Tk, heads, kvHeads, oStride, scale, causal, 0, 0, 0, nullptr); } \
extern "C" __global__ void __launch_bounds__(384, 1)                                                                    \
apb_attention_hopper_persistent_d##D(const __grid_constant__ TensorMap tmQ, const __grid_constant__ TensorMap tmK,      \
    const __grid_constant__ TensorMap tmV, bf16* o, void* lse, int lseF32, int Tq, int Tk, int heads, int kvHeads,      \
    long oStride, float scale, int causal, int* next)                                                                   \
{ attention_hopper<D, false, false, false, true>(&tmQ, &tmK, &tmV, o, lse, lseF32, Tq, Tk, heads, kvHeads, oStride, scale, causal, 0, 0, 0, nullptr, nullptr, nullptr, next); } \
extern "C" __global__ void __launch_bounds__(384, 1)                                                                    \
apb_attention_hopper_chunk_d##D(const __grid_constant__ TensorMap tmQ, const __grid_constant__ TensorMap tmK,           \
    const __grid_constant__ TensorMap tmV, bf16* o, void* lse, int lseF32, int Tq, int Tk, int heads, int kvHeads,      \
    long oStride, float scale, int causal, int h0, int chunkTiles, int chunk, float* state)                             \
{ attention_hopper<D, true>(&tmQ, &tmK, &tmV, o, lse, lseF32, Tq, Tk, heads, kvHeads, oStride, scale, causal, h0, chunkTiles, chunk, state); }
HOP_ENTRIES(64)
HOP_ENTRIES(128)

// QK8 (an experiment, APB_ATTENTION_QK_FP8=1; docs/notes/fp8-attention.md): q and k as e4m3 codes with their scales
// (apb_qk8_quantize_rows, apb_qk8_quantize_key_tiles below), V through the transposed bf16 copy as above.
#define HOP_QK8_ENTRY(D)                                                                                                \
extern "C" __global__ void __launch_bounds__(384, 1)                                                                    \
apb_attention_hopper_qk8_d##D(const __grid_constant__ TensorMap tmQ, const __grid_constant__ TensorMap tmK,             \
    const __grid_constant__ TensorMap tmV, bf16* o, void* lse, int lseF32, int Tq, int Tk, int heads, int kvHeads,      \
    long oStride, float scale, int causal, const float* qScale, const float* kScale)                                    \
{ attention_hopper<D, false, true>(&tmQ, &tmK, &tmV, o, lse, lseF32, Tq, Tk, heads, kvHeads, oStride, scale, causal, 0, 0, 0, nullptr, qScale, kScale); } \
extern "C" __global__ void __launch_bounds__(384, 1)                                                                    \
apb_attention_hopper_qk8_chunk_d##D(const __grid_constant__ TensorMap tmQ, const __grid_constant__ TensorMap tmK,       \
    const __grid_constant__ TensorMap tmV, bf16* o, void* lse, int lseF32, int Tq, int Tk, int heads, int kvHeads,      \
    long oStride, float scale, int causal, int h0, int chunkTiles, int chunk, float* state, const float* qScale,        \
    const float* kScale)                                                                                                \
{ attention_hopper<D, true, true>(&tmQ, &tmK, &tmV, o, lse, lseF32, Tq, Tk, heads, kvHeads, oStride, scale, causal, h0, chunkTiles, chunk, state, qScale, kScale); }
HOP_QK8_ENTRY(64)
HOP_QK8_ENTRY(128)

// Each (row, head) of x, d = 64 or 128 bf16 values, as e4m3 codes with one fp32 scale (the largest magnitude to 448,
// fp8.cuh's rule): codes [rows][heads x d] bytes, scales [rows][heads]. A warp per (row, head), d / 32 values a lane.
extern "C" __global__ void __launch_bounds__(256) apb_qk8_quantize_rows(const bf16* __restrict__ x, long stride, int rows, int heads,
                                                                      int d, unsigned char* __restrict__ codes, float* __restrict__ scales)
{
    const long w = ((long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31, per = d >> 5;
    if (w >= (long)rows * heads) return;   // w is the same for the whole warp: whole warps leave
    const long r = w / heads;
    const int h = (int)(w - r * heads);
    // One 4- or 8-byte load a lane (the host's tensor maps already require 16-byte aligned rows).
    const bf16* src = x + r * stride + (long)h * d + lane * per;
    uint2 w2;
    if (per == 4) w2 = *(const uint2*)src;
    else { w2.x = *(const unsigned*)src; w2.y = 0u; }
    float v[4] = {bf_lo(w2.x), bf_hi(w2.x), bf_lo(w2.y), bf_hi(w2.y)}, m = 0.f;
#pragma unroll
    for (int i = 0; i < 4; i++) m = fmaxf(m, fabsf(v[i]));   // the unused pair is zeros
    const float sc = fp8_scale(warp_max(m));
    unsigned word = 0;
#pragma unroll
    for (int i = 0; i < 4; i++)
        if (i < per) word |= (unsigned)f2e4m3(__fdiv_rn(v[i], sc)) << (8 * i);
    unsigned char* dst = codes + w * d + lane * per;
    if (per == 4) *(unsigned*)dst = word;
    else *(unsigned short*)dst = (unsigned short)word;
    if (lane == 0) scales[w] = sc;
}

// The keys of one 128-key tile and one KV head as e4m3 codes with one fp32 scale for the tile: codes [Tk][kvHeads x d]
// bytes, scales [tiles][kvHeads]. One block of 256 threads per (tile, KV head), two threads per key (d / 2 values each).
extern "C" __global__ void __launch_bounds__(256) apb_qk8_quantize_key_tiles(const bf16* __restrict__ k, long stride, int Tk,
                                                                           int kvHeads, int d, unsigned char* __restrict__ codes,
                                                                           float* __restrict__ scales)
{
    __shared__ float scratch[32];
    const int kh = blockIdx.y, per = d >> 1;
    const long key = (long)blockIdx.x * 128 + (threadIdx.x >> 1);
    const int c0 = (threadIdx.x & 1) * per;
    const bool valid = key < Tk;
    // The thread's d / 2 values held in registers between the tile's reduction and the codes: read once, 16 bytes a
    // load (the host's tensor maps already require 16-byte aligned rows).
    const uint4* src = (const uint4*)(k + key * stride + (long)kh * d + c0);
    uint4 w[8];
    float m = 0.f;
#pragma unroll
    for (int i = 0; i < 8; i++)
    {
        if (valid && i < per / 8) w[i] = src[i];
        else w[i].x = w[i].y = w[i].z = w[i].w = 0u;
        const unsigned* u = (const unsigned*)&w[i];
#pragma unroll
        for (int j = 0; j < 4; j++) m = fmaxf(m, fmaxf(fabsf(bf_lo(u[j])), fabsf(bf_hi(u[j]))));
    }
    const float sc = fp8_scale(block_reduce<true>(m, scratch));
    if (valid)
    {
        unsigned char* dst = codes + key * kvHeads * d + (long)kh * d + c0;
#pragma unroll
        for (int i = 0; i < 8; i++)
        {
            if (i >= per / 8) break;
            const unsigned* u = (const unsigned*)&w[i];
            uint2 out;
            unsigned* o = (unsigned*)&out;
#pragma unroll
            for (int j = 0; j < 2; j++)
                o[j] = (unsigned)f2e4m3(__fdiv_rn(bf_lo(u[2 * j]), sc)) | ((unsigned)f2e4m3(__fdiv_rn(bf_hi(u[2 * j]), sc)) << 8) |
                       ((unsigned)f2e4m3(__fdiv_rn(bf_lo(u[2 * j + 1]), sc)) << 16) | ((unsigned)f2e4m3(__fdiv_rn(bf_hi(u[2 * j + 1]), sc)) << 24);
            *(uint2*)(dst + 8 * i) = out;
        }
    }
    if (threadIdx.x == 0) scales[(long)blockIdx.x * kvHeads + kh] = sc;
}

// vt[c][key] = v[key][c] for the kvHeads x D columns of v: 32 x 32 tiles through shared memory (padded against bank
// conflicts), so both the reads and the writes are coalesced. Keys past Tk in vt's padded rows are never read.
extern "C" __global__ void __launch_bounds__(256)
apb_transpose_v(const bf16* __restrict__ v, bf16* __restrict__ vt, int Tk, int cols, long vStride, long vtStride)
{
    __shared__ bf16 tile[32][33];
    int c0 = blockIdx.x * 32, k0 = blockIdx.y * 32;
    int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    for (int r = ty; r < 32; r += 8)
    {
        int key = k0 + r, c = c0 + tx;
        if (key < Tk && c < cols) tile[r][tx] = v[(long)key * vStride + c];
    }
    __syncthreads();
    for (int r = ty; r < 32; r += 8)
    {
        int c = c0 + r, key = k0 + tx;
        if (key < Tk && c < cols) vt[(long)c * vtStride + key] = tile[tx][r];
    }
}
