using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Apb.Checkpoints;

/// <summary>Element types a checkpoint tensor may have. Only the float types are weights we compute with.</summary>
public enum DType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, Bool }

public static class DTypes
{
    public static int Size(DType t) => t switch
    {
        DType.F64 or DType.I64 => 8,
        DType.F32 or DType.I32 => 4,
        DType.F16 or DType.BF16 or DType.I16 => 2,
        _ => 1,
    };

    /// <summary>Parses the safetensors spelling ("BF16", "F32", ...); null when unknown.</summary>
    public static DType? Parse(string s) => s switch
    {
        "F32" => DType.F32, "F16" => DType.F16, "BF16" => DType.BF16, "F64" => DType.F64,
        "I64" => DType.I64, "I32" => DType.I32, "I16" => DType.I16, "I8" => DType.I8,
        "U8" => DType.U8, "BOOL" => DType.Bool,
        _ => null,
    };

    public static string Name(DType t) => t switch
    {
        DType.F32 => "F32", DType.F16 => "F16", DType.BF16 => "BF16", DType.F64 => "F64",
        DType.I64 => "I64", DType.I32 => "I32", DType.I16 => "I16", DType.I8 => "I8",
        DType.U8 => "U8", _ => "BOOL",
    };

    // bf16 is the top half of an fp32: widening is a shift, exact.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float BF16ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Round-to-nearest-even fp32 -> bf16 (NaN kept quiet).</summary>
    public static ushort FloatToBF16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7fffffff) > 0x7f800000) return (ushort)((u >> 16) | 0x40);
        u += 0x7fff + ((u >> 16) & 1);
        return (ushort)(u >> 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float F16ToFloat(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>Widens <paramref name="count"/> elements of type <paramref name="type"/> at <paramref name="src"/> to fp32.</summary>
    public static unsafe void ToFloat(DType type, byte* src, Span<float> dst)
    {
        switch (type)
        {
            case DType.F32:
                new ReadOnlySpan<float>(src, dst.Length).CopyTo(dst);
                break;
            case DType.BF16:
            {
                var s = (ushort*)src;
                int i = 0;
                fixed (float* d = dst)
                {
                    // Eight at a time: zero-extend to 32 bits and shift into the high half.
                    for (; i + 8 <= dst.Length; i += 8)
                    {
                        var wide = Vector256.WidenLower(Vector256.Create(Vector128.Load(s + i), Vector128<ushort>.Zero));
                        Vector256.ShiftLeft(wide, 16).AsSingle().Store(d + i);
                    }
                }
                for (; i < dst.Length; i++) dst[i] = BitConverter.Int32BitsToSingle(s[i] << 16);
                break;
            }
            case DType.F16:
            {
                var s = (Half*)src;
                for (int i = 0; i < dst.Length; i++) dst[i] = (float)s[i];
                break;
            }
            default:
                throw new ApbException($"cannot use a {Name(type)} tensor as floating-point weights (expected F32, F16 or BF16)");
        }
    }
}
