using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Apb.Backends.Cpu;

/// <summary>
/// The few vector operations the CPU kernels (attention, matmul) use, over one hardware vector of floats. Implemented
/// by thin wrappers of Vector512/256/128 so that each kernel is written once and the JIT compiles it per width; every
/// member inlines to one or a few instructions.
/// </summary>
unsafe interface IVec<TSelf> where TSelf : struct, IVec<TSelf>
{
    static abstract int Count { get; }
    static abstract TSelf Zero { get; }
    static abstract TSelf Load(float* p);
    static abstract void Store(TSelf x, float* p);
    static abstract TSelf Broadcast(float x);
    /// <summary>a x b + c, fused.</summary>
    static abstract TSelf Fma(TSelf a, TSelf b, TSelf c);
    static abstract TSelf Max(TSelf a, TSelf b);
    /// <summary>Round to nearest integer (ties to even).</summary>
    static abstract TSelf Round(TSelf x);
    /// <summary>2^n for integral n in [-126, 127], built directly as float bits.</summary>
    static abstract TSelf Pow2(TSelf n);
    /// <summary>All-ones lanes where a == b, zero lanes elsewhere (a mask for <see cref="Select"/>).</summary>
    static abstract TSelf Equals(TSelf a, TSelf b);
    static abstract TSelf LessThan(TSelf a, TSelf b);
    /// <summary>Lane-wise mask ? ifTrue : ifFalse.</summary>
    static abstract TSelf Select(TSelf mask, TSelf ifTrue, TSelf ifFalse);
    static abstract TSelf operator +(TSelf a, TSelf b);
    static abstract TSelf operator -(TSelf a, TSelf b);
    static abstract TSelf operator *(TSelf a, TSelf b);
}

unsafe readonly struct V512(Vector512<float> x) : IVec<V512>
{
    readonly Vector512<float> x = x;
    public static int Count => Vector512<float>.Count;
    public static V512 Zero => default;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Load(float* p) => new(Vector512.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(V512 a, float* p) => a.x.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Broadcast(float a) => new(Vector512.Create(a));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Fma(V512 a, V512 b, V512 c) => new(Vector512.FusedMultiplyAdd(a.x, b.x, c.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Max(V512 a, V512 b) => new(Vector512.Max(a.x, b.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Round(V512 a) => new(Vector512.Round(a.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 Pow2(V512 n) => new(Vector512.ShiftLeft(Vector512.ConvertToInt32(n.x) + Vector512.Create(127), 23).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Equals(V512 a, V512 b) => new(Vector512.Equals(a.x, b.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 LessThan(V512 a, V512 b) => new(Vector512.LessThan(a.x, b.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Select(V512 m, V512 a, V512 b) => new(Vector512.ConditionalSelect(m.x, a.x, b.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 operator +(V512 a, V512 b) => new(a.x + b.x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 operator -(V512 a, V512 b) => new(a.x - b.x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 operator *(V512 a, V512 b) => new(a.x * b.x);
}

unsafe readonly struct V256(Vector256<float> x) : IVec<V256>
{
    readonly Vector256<float> x = x;
    public static int Count => Vector256<float>.Count;
    public static V256 Zero => default;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Load(float* p) => new(Vector256.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(V256 a, float* p) => a.x.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Broadcast(float a) => new(Vector256.Create(a));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Fma(V256 a, V256 b, V256 c) => new(Vector256.FusedMultiplyAdd(a.x, b.x, c.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Max(V256 a, V256 b) => new(Vector256.Max(a.x, b.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Round(V256 a) => new(Vector256.Round(a.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 Pow2(V256 n) => new(Vector256.ShiftLeft(Vector256.ConvertToInt32(n.x) + Vector256.Create(127), 23).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Equals(V256 a, V256 b) => new(Vector256.Equals(a.x, b.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 LessThan(V256 a, V256 b) => new(Vector256.LessThan(a.x, b.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Select(V256 m, V256 a, V256 b) => new(Vector256.ConditionalSelect(m.x, a.x, b.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 operator +(V256 a, V256 b) => new(a.x + b.x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 operator -(V256 a, V256 b) => new(a.x - b.x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 operator *(V256 a, V256 b) => new(a.x * b.x);
}

unsafe readonly struct V128(Vector128<float> x) : IVec<V128>
{
    readonly Vector128<float> x = x;
    public static int Count => Vector128<float>.Count;
    public static V128 Zero => default;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V128 Load(float* p) => new(Vector128.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(V128 a, float* p) => a.x.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V128 Broadcast(float a) => new(Vector128.Create(a));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V128 Fma(V128 a, V128 b, V128 c) => new(Vector128.FusedMultiplyAdd(a.x, b.x, c.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V128 Max(V128 a, V128 b) => new(Vector128.Max(a.x, b.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V128 Round(V128 a) => new(Vector128.Round(a.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V128 Pow2(V128 n) => new(Vector128.ShiftLeft(Vector128.ConvertToInt32(n.x) + Vector128.Create(127), 23).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V128 Equals(V128 a, V128 b) => new(Vector128.Equals(a.x, b.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V128 LessThan(V128 a, V128 b) => new(Vector128.LessThan(a.x, b.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V128 Select(V128 m, V128 a, V128 b) => new(Vector128.ConditionalSelect(m.x, a.x, b.x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V128 operator +(V128 a, V128 b) => new(a.x + b.x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V128 operator -(V128 a, V128 b) => new(a.x - b.x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V128 operator *(V128 a, V128 b) => new(a.x * b.x);
}
