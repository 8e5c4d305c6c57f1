using System.Runtime.InteropServices;
using System.Text;

namespace Apb.Backends.Cuda.Native;

/// <summary>An error returned by a CUDA library call: the call, the library's code and its own words for it.</summary>
public sealed class CudaException(string message) : ApbException(message);

/// <summary>
/// The CUDA driver API through function pointers taken from libcuda.so.1 (AOT-clean, no marshalling: every argument is
/// a blittable value or pointer). Only the driver is needed at run time, never libcudart: the driver's entry points are
/// stable across CUDA versions, so one binary runs on 12.x and 13.x drivers. Every call goes through
/// <see cref="Check"/>, which turns a failure into an exception naming the call.
/// </summary>
public static unsafe class Driver
{
    public const int CUDA_SUCCESS = 0;
    public const int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    public const int CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38;
    public const int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
    public const int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
    public const int CU_EVENT_DEFAULT = 0;
    public const int CU_STREAM_NON_BLOCKING = 1;

    static readonly object s_lock = new();
    static bool s_tried;
    static string? s_failure;
    public static NativeResolver? Resolver { get; private set; }
    public static string? LibraryPath { get; private set; }

    public static delegate* unmanaged<uint, int> cuInit;
    public static delegate* unmanaged<int*, int> cuDriverGetVersion;
    public static delegate* unmanaged<int*, int> cuDeviceGetCount;
    public static delegate* unmanaged<int*, int, int> cuDeviceGet;
    public static delegate* unmanaged<byte*, int, int, int> cuDeviceGetName;
    public static delegate* unmanaged<int*, int, int, int> cuDeviceGetAttribute;
    public static delegate* unmanaged<nuint*, int, int> cuDeviceTotalMem;
    public static delegate* unmanaged<nint*, int, int> cuDevicePrimaryCtxRetain;
    public static delegate* unmanaged<int, int> cuDevicePrimaryCtxRelease;
    public static delegate* unmanaged<nint, int> cuCtxSetCurrent;
    public static delegate* unmanaged<int> cuCtxSynchronize;
    public static delegate* unmanaged<nuint*, nuint*, int> cuMemGetInfo;
    public static delegate* unmanaged<ulong*, nuint, int> cuMemAlloc;
    public static delegate* unmanaged<ulong, int> cuMemFree;
    public static delegate* unmanaged<void**, nuint, int> cuMemAllocHost;
    public static delegate* unmanaged<void*, int> cuMemFreeHost;
    public static delegate* unmanaged<ulong, void*, nuint, nint, int> cuMemcpyHtoDAsync;
    public static delegate* unmanaged<void*, ulong, nuint, nint, int> cuMemcpyDtoHAsync;
    public static delegate* unmanaged<ulong, ulong, nuint, nint, int> cuMemcpyDtoDAsync;
    public static delegate* unmanaged<ulong, byte, nuint, nint, int> cuMemsetD8Async;
    public static delegate* unmanaged<ulong, ushort, nuint, nint, int> cuMemsetD16Async;
    public static delegate* unmanaged<ulong, uint, nuint, nint, int> cuMemsetD32Async;
    public static delegate* unmanaged<nint*, uint, int> cuStreamCreate;
    public static delegate* unmanaged<nint, int> cuStreamDestroy;
    public static delegate* unmanaged<nint, int> cuStreamSynchronize;
    public static delegate* unmanaged<nint*, uint, int> cuEventCreate;
    public static delegate* unmanaged<nint, int> cuEventDestroy;
    public static delegate* unmanaged<nint, nint, int> cuEventRecord;
    public static delegate* unmanaged<nint, int> cuEventSynchronize;
    public static delegate* unmanaged<float*, nint, nint, int> cuEventElapsedTime;
    public static delegate* unmanaged<nint*, void*, int> cuModuleLoadData;
    public static delegate* unmanaged<nint, int> cuModuleUnload;
    public static delegate* unmanaged<nint*, nint, byte*, int> cuModuleGetFunction;
    public static delegate* unmanaged<nint, int, int, int> cuFuncSetAttribute;
    public static delegate* unmanaged<int*, nint, int, nuint, int> cuOccupancyMaxActiveBlocksPerMultiprocessor;
    public static delegate* unmanaged<nint, uint, uint, uint, uint, uint, uint, uint, nint, void**, void**, int> cuLaunchKernel;
    /// <summary>cuLaunchKernelEx (CUDA 12.0+), for launch attributes; null on an older driver.</summary>
    public static delegate* unmanaged<LaunchConfig*, nint, void**, void**, int> cuLaunchKernelEx;
    // Stream capture and graphs (CUDA 12.0+ for cuGraphExecUpdate_v2): null on an older driver, where StepGraph is off.
    public static delegate* unmanaged<nint, int, int> cuStreamBeginCapture;
    public static delegate* unmanaged<nint, nint*, int> cuStreamEndCapture;
    public static delegate* unmanaged<nint*, nint, ulong, int> cuGraphInstantiateWithFlags;
    public static delegate* unmanaged<nint, nint, GraphExecUpdateResultInfo*, int> cuGraphExecUpdate;
    public static delegate* unmanaged<nint, nint, int> cuGraphLaunch;
    public static delegate* unmanaged<nint, int> cuGraphDestroy;
    public static delegate* unmanaged<nint, int> cuGraphExecDestroy;
    public static delegate* unmanaged<int, byte**, int> cuGetErrorString;
    public static delegate* unmanaged<int, byte**, int> cuGetErrorName;
    /// <summary>TMA descriptors (CUDA 12+ drivers, sm_90 devices). Null on older drivers: the Hopper attention kernel is then not offered.</summary>
    public static delegate* unmanaged<void*, int, uint, ulong, ulong*, ulong*, uint*, uint*, int, int, int, int, int> cuTensorMapEncodeTiled;
    public const int CU_TENSOR_MAP_DATA_TYPE_UINT8 = 0;
    public const int CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 = 9;
    public const int CU_TENSOR_MAP_SWIZZLE_64B = 2;
    public const int CU_TENSOR_MAP_SWIZZLE_128B = 3;
    public const int CU_TENSOR_MAP_L2_PROMOTION_L2_256B = 3;

    /// <summary>
    /// Loads libcuda and calls cuInit once. Returns null when the driver is usable, else why not (with the load trace).
    /// Never throws: `apb doctor` and the GPU test attribute ask this on machines without a GPU.
    /// </summary>
    public static string? TryInitialize()
    {
        lock (s_lock)
        {
            if (s_tried) return s_failure;
            s_tried = true;
            s_failure = Load();
            return s_failure;
        }
    }

    /// <summary>Like <see cref="TryInitialize"/> but throws an ApbException with the trace when the driver is unusable.</summary>
    public static void Initialize()
    {
        if (TryInitialize() is { } why) throw new ApbException(why);
    }

    static string? Load()
    {
        var r = Resolver = new NativeResolver();
        nint lib = r.TryLoad("driver", "libcuda.so.1", "libcuda.so");
        if (lib == 0)
            return "no CUDA driver found (libcuda.so.1): this machine has no NVIDIA GPU or its driver is not installed.\n" +
                   "Searched (set APB_CUDA_LIB_DIR to the folder holding libcuda.so.1 to add one):\n" + r.TraceText;
        LibraryPath = r.Loaded["driver"];
        try
        {
            cuInit = (delegate* unmanaged<uint, int>)F(lib, "cuInit");
            cuDriverGetVersion = (delegate* unmanaged<int*, int>)F(lib, "cuDriverGetVersion");
            cuDeviceGetCount = (delegate* unmanaged<int*, int>)F(lib, "cuDeviceGetCount");
            cuDeviceGet = (delegate* unmanaged<int*, int, int>)F(lib, "cuDeviceGet");
            cuDeviceGetName = (delegate* unmanaged<byte*, int, int, int>)F(lib, "cuDeviceGetName");
            cuDeviceGetAttribute = (delegate* unmanaged<int*, int, int, int>)F(lib, "cuDeviceGetAttribute");
            cuDeviceTotalMem = (delegate* unmanaged<nuint*, int, int>)F(lib, "cuDeviceTotalMem_v2");
            cuDevicePrimaryCtxRetain = (delegate* unmanaged<nint*, int, int>)F(lib, "cuDevicePrimaryCtxRetain");
            cuDevicePrimaryCtxRelease = (delegate* unmanaged<int, int>)F(lib, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease");
            cuCtxSetCurrent = (delegate* unmanaged<nint, int>)F(lib, "cuCtxSetCurrent");
            cuCtxSynchronize = (delegate* unmanaged<int>)F(lib, "cuCtxSynchronize");
            cuMemGetInfo = (delegate* unmanaged<nuint*, nuint*, int>)F(lib, "cuMemGetInfo_v2");
            cuMemAlloc = (delegate* unmanaged<ulong*, nuint, int>)F(lib, "cuMemAlloc_v2");
            cuMemFree = (delegate* unmanaged<ulong, int>)F(lib, "cuMemFree_v2");
            cuMemAllocHost = (delegate* unmanaged<void**, nuint, int>)F(lib, "cuMemAllocHost_v2");
            cuMemFreeHost = (delegate* unmanaged<void*, int>)F(lib, "cuMemFreeHost");
            cuMemcpyHtoDAsync = (delegate* unmanaged<ulong, void*, nuint, nint, int>)F(lib, "cuMemcpyHtoDAsync_v2");
            cuMemcpyDtoHAsync = (delegate* unmanaged<void*, ulong, nuint, nint, int>)F(lib, "cuMemcpyDtoHAsync_v2");
            cuMemcpyDtoDAsync = (delegate* unmanaged<ulong, ulong, nuint, nint, int>)F(lib, "cuMemcpyDtoDAsync_v2");
            cuMemsetD8Async = (delegate* unmanaged<ulong, byte, nuint, nint, int>)F(lib, "cuMemsetD8Async");
            cuMemsetD16Async = (delegate* unmanaged<ulong, ushort, nuint, nint, int>)F(lib, "cuMemsetD16Async");
            cuMemsetD32Async = (delegate* unmanaged<ulong, uint, nuint, nint, int>)F(lib, "cuMemsetD32Async");
            cuStreamCreate = (delegate* unmanaged<nint*, uint, int>)F(lib, "cuStreamCreate");
            cuStreamDestroy = (delegate* unmanaged<nint, int>)F(lib, "cuStreamDestroy_v2", "cuStreamDestroy");
            cuStreamSynchronize = (delegate* unmanaged<nint, int>)F(lib, "cuStreamSynchronize");
            cuEventCreate = (delegate* unmanaged<nint*, uint, int>)F(lib, "cuEventCreate");
            cuEventDestroy = (delegate* unmanaged<nint, int>)F(lib, "cuEventDestroy_v2", "cuEventDestroy");
            cuEventRecord = (delegate* unmanaged<nint, nint, int>)F(lib, "cuEventRecord");
            cuEventSynchronize = (delegate* unmanaged<nint, int>)F(lib, "cuEventSynchronize");
            cuEventElapsedTime = (delegate* unmanaged<float*, nint, nint, int>)F(lib, "cuEventElapsedTime_v2", "cuEventElapsedTime");
            cuModuleLoadData = (delegate* unmanaged<nint*, void*, int>)F(lib, "cuModuleLoadData");
            cuModuleUnload = (delegate* unmanaged<nint, int>)F(lib, "cuModuleUnload");
            cuModuleGetFunction = (delegate* unmanaged<nint*, nint, byte*, int>)F(lib, "cuModuleGetFunction");
            cuFuncSetAttribute = (delegate* unmanaged<nint, int, int, int>)F(lib, "cuFuncSetAttribute");
            cuOccupancyMaxActiveBlocksPerMultiprocessor = (delegate* unmanaged<int*, nint, int, nuint, int>)F(lib, "cuOccupancyMaxActiveBlocksPerMultiprocessor");
            cuLaunchKernel = (delegate* unmanaged<nint, uint, uint, uint, uint, uint, uint, uint, nint, void**, void**, int>)F(lib, "cuLaunchKernel");
            cuLaunchKernelEx = NativeLibrary.TryGetExport(lib, "cuLaunchKernelEx", out var launchEx)
                ? (delegate* unmanaged<LaunchConfig*, nint, void**, void**, int>)launchEx : null;
            // All or none: a driver without one of them runs every step directly (CudaBackend.StepGraphs is false).
            if (NativeLibrary.TryGetExport(lib, "cuStreamBeginCapture_v2", out var begin) && NativeLibrary.TryGetExport(lib, "cuStreamEndCapture", out var end) &&
                NativeLibrary.TryGetExport(lib, "cuGraphInstantiateWithFlags", out var instantiate) &&
                NativeLibrary.TryGetExport(lib, "cuGraphExecUpdate_v2", out var update) && NativeLibrary.TryGetExport(lib, "cuGraphLaunch", out var launch) &&
                NativeLibrary.TryGetExport(lib, "cuGraphDestroy", out var destroy) && NativeLibrary.TryGetExport(lib, "cuGraphExecDestroy", out var execDestroy))
            {
                cuStreamBeginCapture = (delegate* unmanaged<nint, int, int>)begin;
                cuStreamEndCapture = (delegate* unmanaged<nint, nint*, int>)end;
                cuGraphInstantiateWithFlags = (delegate* unmanaged<nint*, nint, ulong, int>)instantiate;
                cuGraphExecUpdate = (delegate* unmanaged<nint, nint, GraphExecUpdateResultInfo*, int>)update;
                cuGraphLaunch = (delegate* unmanaged<nint, nint, int>)launch;
                cuGraphDestroy = (delegate* unmanaged<nint, int>)destroy;
                cuGraphExecDestroy = (delegate* unmanaged<nint, int>)execDestroy;
            }
            cuGetErrorString = (delegate* unmanaged<int, byte**, int>)F(lib, "cuGetErrorString");
            cuGetErrorName = (delegate* unmanaged<int, byte**, int>)F(lib, "cuGetErrorName");
            cuTensorMapEncodeTiled = NativeLibrary.TryGetExport(lib, "cuTensorMapEncodeTiled", out var tmap)
                ? (delegate* unmanaged<void*, int, uint, ulong, ulong*, ulong*, uint*, uint*, int, int, int, int, int>)tmap : null;
        }
        catch (ApbException e)
        {
            return $"{LibraryPath}: {e.Message}\n{r.TraceText}";
        }
        int rc = cuInit(0);
        if (rc != CUDA_SUCCESS)
            return $"the CUDA driver ({LibraryPath}) loaded but cuInit failed: {ErrorText(rc)}" +
                   (rc == 100 ? " (no CUDA-capable device is visible: check nvidia-smi and CUDA_VISIBLE_DEVICES)" : "");
        return null;
    }

    static nint F(nint lib, params string[] names) => NativeResolver.Export(lib, "libcuda", names);

    public static string ErrorText(int rc)
    {
        if (cuGetErrorName == null) return $"CUresult {rc}";
        byte* name = null, text = null;
        cuGetErrorName(rc, &name);
        cuGetErrorString(rc, &text);
        string n = name != null ? Marshal.PtrToStringUTF8((nint)name)! : "?";
        string t = text != null ? Marshal.PtrToStringUTF8((nint)text)! : "unknown error";
        return $"{n} ({rc}): {t}";
    }

    /// <summary>Throws a <see cref="CudaException"/> naming <paramref name="call"/> when <paramref name="rc"/> is not success.</summary>
    public static void Check(int rc, string call)
    {
        if (rc != CUDA_SUCCESS) throw new CudaException($"{call} failed: {ErrorText(rc)}");
    }

    public static int Attribute(int device, int attribute)
    {
        int v;
        Check(cuDeviceGetAttribute(&v, attribute, device), $"cuDeviceGetAttribute({attribute})");
        return v;
    }

    public static string DeviceName(int device)
    {
        byte* buf = stackalloc byte[256];
        Check(cuDeviceGetName(buf, 256, device), "cuDeviceGetName");
        return Marshal.PtrToStringUTF8((nint)buf) ?? "?";
    }

    public static string VersionText(int v) => $"{v / 1000}.{v % 1000 / 10}";

    internal static byte[] Utf8Z(string s)
    {
        var b = new byte[Encoding.UTF8.GetByteCount(s) + 1];
        Encoding.UTF8.GetBytes(s, b);
        return b;
    }
}

/// <summary>CUlaunchAttribute: an id, padding to 8 bytes, and a 64-byte value union of which we use the first int.</summary>
[StructLayout(LayoutKind.Explicit, Size = 72)]
public struct LaunchAttribute
{
    /// <summary>CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION: the value (an int) 1 lets the grid start while the
    /// one before it in the stream is still running, once that one allows it (griddepcontrol.launch_dependents).</summary>
    public const int ProgrammaticStreamSerialization = 6;

    [FieldOffset(0)] public int Id;
    [FieldOffset(8)] public int Value;
}

/// <summary>CUlaunchConfig: grid, block, dynamic shared memory, stream and the attributes.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct LaunchConfig
{
    public uint GridX, GridY, GridZ, BlockX, BlockY, BlockZ, SharedBytes;
    public nint Stream;
    public LaunchAttribute* Attributes;
    public uint AttributeCount;
}

/// <summary>CUgraphExecUpdateResultInfo: why cuGraphExecUpdate refused a graph (the nodes it stopped at).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct GraphExecUpdateResultInfo
{
    public int Result;
    public nint ErrorNode, ErrorFromNode;
}
