using System.Runtime.InteropServices;

namespace Apb.Backends.Cuda.Native;

/// <summary>An error returned by NCCL: the call, NCCL's code and its own words (with the last-error detail when it has one).</summary>
public sealed class NcclException(string message) : ApbException(message);

/// <summary>ncclUniqueId: 128 opaque bytes made by rank 0 and handed to every rank (over the launcher's rendezvous).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct NcclUniqueId
{
    public const int Size = 128;
    public fixed byte Bytes[Size];

    public byte[] ToArray()
    {
        var a = new byte[Size];
        fixed (byte* p = Bytes) new ReadOnlySpan<byte>(p, Size).CopyTo(a);
        return a;
    }

    public static NcclUniqueId From(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Size) throw new ArgumentException($"an ncclUniqueId is {Size} bytes, got {bytes.Length}");
        var id = new NcclUniqueId();
        bytes.CopyTo(new Span<byte>(id.Bytes, Size));
        return id;
    }
}

/// <summary>
/// NCCL (libnccl.so.2) through function pointers, found by the same <see cref="NativeResolver"/> as the CUDA libraries
/// (the Ubuntu package puts it in /usr/lib/x86_64-linux-gnu, which ldconfig may not list). The enum values are those of
/// nccl.h, stable since NCCL 2.0 (bf16 since 2.10). A few driver calls the communicator needs and Driver does not bind
/// (stream waits, event queries) are taken here from libcuda too, so the driver binding stays as it is.
/// </summary>
public static unsafe class Nccl
{
    public const int ncclSuccess = 0;
    public const int ncclInProgress = 7;
    public const int ncclFloat32 = 7;
    public const int ncclBfloat16 = 9;
    public const int ncclSum = 0;
    public const int CUDA_ERROR_NOT_READY = 600;
    public const uint CU_EVENT_DISABLE_TIMING = 2;

    static readonly object s_lock = new();
    static bool s_tried;
    static string? s_failure;
    public static string? LibraryPath { get; private set; }
    public static NativeResolver? Resolver { get; private set; }
    /// <summary>NCCL's own version code (e.g. 22803 for 2.28.3).</summary>
    public static int Version { get; private set; }

    public static delegate* unmanaged<int*, int> ncclGetVersion;
    public static delegate* unmanaged<NcclUniqueId*, int> ncclGetUniqueId;
    public static delegate* unmanaged<nint*, int, NcclUniqueId, int, int> ncclCommInitRank;
    public static delegate* unmanaged<nint, int> ncclCommDestroy;
    public static delegate* unmanaged<nint, int> ncclCommFinalize;
    public static delegate* unmanaged<nint, int> ncclCommAbort;
    public static delegate* unmanaged<nint, int*, int> ncclCommGetAsyncError;
    public static delegate* unmanaged<int, byte*> ncclGetErrorString;
    public static delegate* unmanaged<nint, byte*> ncclGetLastError;
    // (sendbuff, recvbuff, count, datatype, [op | root,] comm, stream)
    public static delegate* unmanaged<ulong, ulong, nuint, int, nint, nint, int> ncclAllGather;
    public static delegate* unmanaged<ulong, ulong, nuint, int, int, nint, nint, int> ncclAllReduce;
    public static delegate* unmanaged<ulong, ulong, nuint, int, int, nint, nint, int> ncclBroadcast;
    // (buff, count, datatype, peer, comm, stream)
    public static delegate* unmanaged<ulong, nuint, int, int, nint, nint, int> ncclSend;
    public static delegate* unmanaged<ulong, nuint, int, int, nint, nint, int> ncclRecv;
    public static delegate* unmanaged<int> ncclGroupStart;
    public static delegate* unmanaged<int> ncclGroupEnd;

    public static delegate* unmanaged<nint, nint, uint, int> cuStreamWaitEvent;
    public static delegate* unmanaged<nint, int> cuEventQuery;

    /// <summary>Loads NCCL once. Null when usable, else why not, with the load trace. Never throws (doctor, tests).</summary>
    public static string? TryInitialize(Func<string, string?>? env = null)
    {
        lock (s_lock)
        {
            if (s_tried) return s_failure;
            s_tried = true;
            return s_failure = Load(env);
        }
    }

    public static void Initialize()
    {
        if (TryInitialize() is { } why) throw new ApbException(why);
    }

    /// <summary>Loads nothing, binds nothing: the message a machine without NCCL gets, from a resolver with a faked environment.</summary>
    internal static string? Probe(NativeResolver r, out nint lib)
    {
        lib = r.TryLoad("nccl", "libnccl.so.2", "libnccl.so");
        return lib != 0 ? null
            : "NCCL (libnccl.so.2) not found: multi-GPU runs (apb launch) need it. Install NVIDIA's libnccl2 package, or set " +
              "APB_CUDA_LIB_DIR to the folder holding libnccl.so.2.\nSearched:\n" + r.TraceText;
    }

    static string? Load(Func<string, string?>? env)
    {
        var r = Resolver = new NativeResolver(env);
        if (Probe(r, out nint lib) is { } missing) return missing;
        LibraryPath = r.Loaded["nccl"];
        try
        {
            ncclGetVersion = (delegate* unmanaged<int*, int>)F(lib, "ncclGetVersion");
            ncclGetUniqueId = (delegate* unmanaged<NcclUniqueId*, int>)F(lib, "ncclGetUniqueId");
            ncclCommInitRank = (delegate* unmanaged<nint*, int, NcclUniqueId, int, int>)F(lib, "ncclCommInitRank");
            ncclCommDestroy = (delegate* unmanaged<nint, int>)F(lib, "ncclCommDestroy");
            ncclCommFinalize = (delegate* unmanaged<nint, int>)F(lib, "ncclCommFinalize");
            ncclCommAbort = (delegate* unmanaged<nint, int>)F(lib, "ncclCommAbort");
            ncclCommGetAsyncError = (delegate* unmanaged<nint, int*, int>)F(lib, "ncclCommGetAsyncError");
            ncclGetErrorString = (delegate* unmanaged<int, byte*>)F(lib, "ncclGetErrorString");
            ncclGetLastError = (delegate* unmanaged<nint, byte*>)F(lib, "ncclGetLastError");
            ncclAllGather = (delegate* unmanaged<ulong, ulong, nuint, int, nint, nint, int>)F(lib, "ncclAllGather");
            ncclAllReduce = (delegate* unmanaged<ulong, ulong, nuint, int, int, nint, nint, int>)F(lib, "ncclAllReduce");
            ncclBroadcast = (delegate* unmanaged<ulong, ulong, nuint, int, int, nint, nint, int>)F(lib, "ncclBroadcast");
            ncclSend = (delegate* unmanaged<ulong, nuint, int, int, nint, nint, int>)F(lib, "ncclSend");
            ncclRecv = (delegate* unmanaged<ulong, nuint, int, int, nint, nint, int>)F(lib, "ncclRecv");
            ncclGroupStart = (delegate* unmanaged<int>)F(lib, "ncclGroupStart");
            ncclGroupEnd = (delegate* unmanaged<int>)F(lib, "ncclGroupEnd");
        }
        catch (ApbException e)
        {
            return $"{LibraryPath}: {e.Message}\n{r.TraceText}";
        }
        int v;
        if (ncclGetVersion(&v) == ncclSuccess) Version = v;
        if (Version < 21000)
            return $"{LibraryPath} is NCCL {VersionText(Version)}; apb needs 2.10 or newer (bf16 transfers)";

        // The driver must be up first (CudaBackend did that); libcuda is already loaded, so this dlopen is a lookup.
        if (Driver.TryInitialize() is { } noDriver) return noDriver;
        var cuda = new NativeResolver(env).TryLoad("driver", "libcuda.so.1", "libcuda.so");
        try
        {
            cuStreamWaitEvent = (delegate* unmanaged<nint, nint, uint, int>)NativeResolver.Export(cuda, "libcuda", "cuStreamWaitEvent");
            cuEventQuery = (delegate* unmanaged<nint, int>)NativeResolver.Export(cuda, "libcuda", "cuEventQuery");
        }
        catch (ApbException e) { return e.Message; }
        return null;
    }

    static nint F(nint lib, params string[] names) => NativeResolver.Export(lib, "libnccl", names);

    public static string VersionText(int v) => v >= 10000 ? $"{v / 10000}.{v / 100 % 100}.{v % 100}" : $"{v / 1000}.{v / 100 % 10}.{v % 100}";

    public static string ErrorText(int rc, nint comm = 0)
    {
        string s = ncclGetErrorString != null ? Marshal.PtrToStringUTF8((nint)ncclGetErrorString(rc)) ?? "" : "";
        string last = ncclGetLastError != null ? Marshal.PtrToStringUTF8((nint)ncclGetLastError(comm)) ?? "" : "";
        return $"ncclResult {rc} ({s})" + (last.Length > 0 ? $": {last}" : "");
    }

    public static void Check(int rc, string call, nint comm = 0)
    {
        if (rc != ncclSuccess) throw new NcclException($"{call} failed: {ErrorText(rc, comm)}");
    }
}
