using System.Runtime.InteropServices;

namespace Apb.Backends.Cuda.Native;

/// <summary>
/// NVRTC, the run-time CUDA C++ compiler, through function pointers. It needs no GPU: it turns a .cu source into a cubin
/// for a named architecture, which the driver then loads.
/// </summary>
public static unsafe class Nvrtc
{
    static readonly object s_lock = new();
    static bool s_tried;
    static string? s_failure;
    public static string? LibraryPath { get; private set; }
    public static NativeResolver? Resolver { get; private set; }

    public static delegate* unmanaged<int*, int*, int> nvrtcVersion;
    public static delegate* unmanaged<nint*, byte*, byte*, int, byte**, byte**, int> nvrtcCreateProgram;
    public static delegate* unmanaged<nint*, int> nvrtcDestroyProgram;
    public static delegate* unmanaged<nint, int, byte**, int> nvrtcCompileProgram;
    public static delegate* unmanaged<nint, nuint*, int> nvrtcGetProgramLogSize;
    public static delegate* unmanaged<nint, byte*, int> nvrtcGetProgramLog;
    public static delegate* unmanaged<nint, nuint*, int> nvrtcGetCUBINSize;
    public static delegate* unmanaged<nint, byte*, int> nvrtcGetCUBIN;
    public static delegate* unmanaged<nint, nuint*, int> nvrtcGetPTXSize;
    public static delegate* unmanaged<nint, byte*, int> nvrtcGetPTX;
    public static delegate* unmanaged<int, byte*> nvrtcGetErrorString;

    public static string? TryInitialize()
    {
        lock (s_lock)
        {
            if (s_tried) return s_failure;
            s_tried = true;
            var r = Resolver = new NativeResolver();
            nint lib = r.TryLoad("nvrtc", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so");
            if (lib == 0)
                return s_failure = "NVRTC (libnvrtc.so.13 or .12) not found: kernels cannot be compiled. Install the CUDA toolkit's " +
                                   "NVRTC or set APB_CUDA_LIB_DIR / CUDA_HOME.\nSearched:\n" + r.TraceText;
            LibraryPath = r.Loaded["nvrtc"];
            try
            {
                nvrtcVersion = (delegate* unmanaged<int*, int*, int>)F(lib, "nvrtcVersion");
                nvrtcCreateProgram = (delegate* unmanaged<nint*, byte*, byte*, int, byte**, byte**, int>)F(lib, "nvrtcCreateProgram");
                nvrtcDestroyProgram = (delegate* unmanaged<nint*, int>)F(lib, "nvrtcDestroyProgram");
                nvrtcCompileProgram = (delegate* unmanaged<nint, int, byte**, int>)F(lib, "nvrtcCompileProgram");
                nvrtcGetProgramLogSize = (delegate* unmanaged<nint, nuint*, int>)F(lib, "nvrtcGetProgramLogSize");
                nvrtcGetProgramLog = (delegate* unmanaged<nint, byte*, int>)F(lib, "nvrtcGetProgramLog");
                nvrtcGetCUBINSize = (delegate* unmanaged<nint, nuint*, int>)F(lib, "nvrtcGetCUBINSize");
                nvrtcGetCUBIN = (delegate* unmanaged<nint, byte*, int>)F(lib, "nvrtcGetCUBIN");
                nvrtcGetPTXSize = (delegate* unmanaged<nint, nuint*, int>)F(lib, "nvrtcGetPTXSize");
                nvrtcGetPTX = (delegate* unmanaged<nint, byte*, int>)F(lib, "nvrtcGetPTX");
                nvrtcGetErrorString = (delegate* unmanaged<int, byte*>)F(lib, "nvrtcGetErrorString");
            }
            catch (ApbException e)
            {
                return s_failure = e.Message;
            }
            return s_failure = null;
        }
    }

    public static void Initialize()
    {
        if (TryInitialize() is { } why) throw new ApbException(why);
    }

    static nint F(nint lib, string name) => NativeResolver.Export(lib, "libnvrtc", name);

    public static void Check(int rc, string call)
    {
        if (rc == 0) return;
        string text = nvrtcGetErrorString != null ? Marshal.PtrToStringUTF8((nint)nvrtcGetErrorString(rc)) ?? "?" : "?";
        throw new CudaException($"{call} failed: nvrtcResult {rc}: {text}");
    }

    /// <summary>(major, minor), e.g. (13, 0).</summary>
    public static (int Major, int Minor) Version()
    {
        Initialize();
        int major, minor;
        Check(nvrtcVersion(&major, &minor), "nvrtcVersion");
        return (major, minor);
    }
}
