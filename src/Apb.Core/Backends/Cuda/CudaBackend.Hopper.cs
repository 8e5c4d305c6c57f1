using Apb.Backends.Cuda.Native;

namespace Apb.Backends.Cuda;

/// <summary>
/// Host side of the Hopper attention kernel (Kernels/attention_hopper.cu): the transposed V copy, the three TMA tensor
/// maps and the launch. The kernel's shared-memory layout is mirrored here by <see cref="HopperSharedBytes"/>.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    const string HopperFile = "attention_hopper.cu";

    /// <summary>
    /// Below this many query rows Auto keeps the mma.sync kernel (64-row tiles): a 128-row tile would be more than half
    /// empty, and the V transpose reads and writes every key for little work. A judgement, not a measured crossover.
    /// </summary>
    public const int HopperMinRows = 64;

    /// <summary>
    /// The wgmma + TMA kernel runs here: an sm_90 device, an NVRTC that compiles for sm_90a (not the compute_80 PTX
    /// fallback of an older one) and a driver that encodes tensor maps.
    /// </summary>
    public bool HopperAttentionAvailable =>
        _hopperAvailable ??= Context.Arch == "sm_90a" && Driver.cuTensorMapEncodeTiled != null && KernelCompiler.CompilesFor(Context.Arch);

    bool? _hopperAvailable;

    /// <summary>Bytes of dynamic shared memory: Q tile + 3 stages x (K tile + Vt tile) + 7 mbarriers + 1 KB to align to 1024.</summary>
    static uint HopperSharedBytes(int d) => (uint)(d * 128 * 2 + 3 * (d * 128 * 2 + 128 * d * 2) + 8 * 7 + 1024);

    void AttentionHopper(ulong qp, ulong kp, ulong vp, ulong op, ulong lp, int lseF32, int Tq, int Tk, int heads, int kvHeads,
                         int d, long qStride, long kStride, long oStride, float scale, int causal)
    {
        int cols = kvHeads * d;
        long tkPad = (Tk + 7L) / 8 * 8; // TMA strides are multiples of 16 bytes
        ulong vt = Pool.Rent(cols * tkPad * 2, "attention (transposed V)");
        try
        {
            {
                long vtStride = tkPad;
                void** targs = stackalloc void*[] { &vp, &vt, &Tk, &cols, &kStride, &vtStride };
                Context.Launch(Context.Function(HopperFile, "apb_transpose_v"), "apb_transpose_v",
                    ((uint)((cols + 31) / 32), (uint)((Tk + 31) / 32), 1), 256, 0, targs);
            }
            // Tensor maps need 64-byte alignment: carve them out of one stack buffer.
            byte* raw = stackalloc byte[3 * 128 + 64];
            byte* maps = (byte*)(((nuint)raw + 63) & ~(nuint)63);
            byte* mq = maps, mk = maps + 128, mv = maps + 256;
            // Q: [Tq rows][heads x d], K: [Tk rows][kvHeads x d], boxes of 64 columns x 128 rows. Vt: [kvHeads x d rows][Tk], boxes of 64 keys x d rows.
            EncodeTensorMap(mq, qp, (ulong)(heads * d), (ulong)Tq, (ulong)qStride * 2, 64, 128, "q");
            EncodeTensorMap(mk, kp, (ulong)cols, (ulong)Tk, (ulong)kStride * 2, 64, 128, "k");
            EncodeTensorMap(mv, vt, (ulong)Tk, (ulong)cols, (ulong)tkPad * 2, 64, (uint)d, "transposed v");

            string fn = d == 64 ? "apb_attention_hopper_d64" : "apb_attention_hopper_d128";
            uint smem = HopperSharedBytes(d);
            nint f = KernelWithSmem(HopperFile, fn, smem);
            void** args = stackalloc void*[] { mq, mk, mv, &op, &lp, &lseF32, &Tq, &Tk, &heads, &kvHeads, &oStride, &scale, &causal };
            Context.Launch(f, fn, ((uint)((Tq + 127) / 128), (uint)heads, 1), 384, smem, args);
        }
        finally
        {
            Pool.Return(vt); // stream-ordered: a later renter's work queues behind this kernel
        }
    }

    /// <summary>A 2-D bf16 tensor map with 128-byte swizzle; out-of-bounds rows and columns read as zeros.</summary>
    static void EncodeTensorMap(byte* map, ulong address, ulong inner, ulong rows, ulong rowBytes, uint boxInner, uint boxRows, string what)
    {
        ulong* dims = stackalloc ulong[] { inner, rows };
        ulong* strides = stackalloc ulong[] { rowBytes };
        uint* box = stackalloc uint[] { boxInner, boxRows };
        uint* elem = stackalloc uint[] { 1, 1 };
        int rc = Driver.cuTensorMapEncodeTiled(map, Driver.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, address, dims, strides, box, elem,
            0 /* no interleave */, Driver.CU_TENSOR_MAP_SWIZZLE_128B, Driver.CU_TENSOR_MAP_L2_PROMOTION_L2_256B, 0 /* zero fill */);
        Driver.Check(rc, $"cuTensorMapEncodeTiled({what}: {inner} x {rows}, row {rowBytes} bytes, box {boxInner} x {boxRows})");
    }
}
