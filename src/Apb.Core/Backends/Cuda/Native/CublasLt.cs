using System.Runtime.InteropServices;

namespace Apb.Backends.Cuda.Native;

/// <summary>
/// cuBLASLt, for the GEMMs (bf16 operands, fp32 accumulate), through function pointers. The enum values are the ones in
/// cublasLt.h / library_types.h, which NVIDIA keeps stable across versions.
/// </summary>
public static unsafe class CublasLt
{
    public const int CUBLAS_COMPUTE_32F = 68;
    public const int CUDA_R_32F = 0;
    public const int CUDA_R_16F = 2;
    public const int CUDA_R_16BF = 14;
    public const int CUBLAS_OP_N = 0;
    public const int CUBLAS_OP_T = 1;
    public const int CUBLASLT_MATMUL_DESC_TRANSA = 3;
    public const int CUBLASLT_MATMUL_DESC_TRANSB = 4;
    public const int CUBLASLT_MATMUL_DESC_EPILOGUE = 7;
    public const int CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8;
    public const int CUBLASLT_EPILOGUE_DEFAULT = 1;
    public const int CUBLASLT_EPILOGUE_BIAS = 4;
    public const int CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1;

    /// <summary>cublasLtMatmulHeuristicResult_t: algo (64 bytes), workspaceSize, state, wavesCount, reserved[4].</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct HeuristicResult
    {
        public fixed ulong Algo[8];
        public nuint WorkspaceSize;
        public int State;
        public float WavesCount;
        public fixed int Reserved[4];
    }

    static readonly object s_lock = new();
    static bool s_tried;
    static string? s_failure;
    public static string? LibraryPath { get; private set; }
    public static NativeResolver? Resolver { get; private set; }

    public static delegate* unmanaged<nint*, int> cublasLtCreate;
    public static delegate* unmanaged<nint, int> cublasLtDestroy;
    public static delegate* unmanaged<nuint> cublasLtGetVersion;
    public static delegate* unmanaged<nint*, int, int, int> cublasLtMatmulDescCreate;
    public static delegate* unmanaged<nint, int> cublasLtMatmulDescDestroy;
    public static delegate* unmanaged<nint, int, void*, nuint, int> cublasLtMatmulDescSetAttribute;
    public static delegate* unmanaged<nint*, int, ulong, ulong, long, int> cublasLtMatrixLayoutCreate;
    public static delegate* unmanaged<nint, int> cublasLtMatrixLayoutDestroy;
    public static delegate* unmanaged<nint*, int> cublasLtMatmulPreferenceCreate;
    public static delegate* unmanaged<nint, int> cublasLtMatmulPreferenceDestroy;
    public static delegate* unmanaged<nint, int, void*, nuint, int> cublasLtMatmulPreferenceSetAttribute;
    public static delegate* unmanaged<nint, nint, nint, nint, nint, nint, nint, int, HeuristicResult*, int*, int> cublasLtMatmulAlgoGetHeuristic;
    // (handle, desc, alpha, A, Adesc, B, Bdesc, beta, C, Cdesc, D, Ddesc, algo, workspace, workspaceSize, stream)
    public static delegate* unmanaged<nint, nint, void*, ulong, nint, ulong, nint, void*, ulong, nint, ulong, nint, void*, ulong, nuint, nint, int> cublasLtMatmul;
    public static delegate* unmanaged<int, byte*> cublasLtGetStatusString;

    public static string? TryInitialize()
    {
        lock (s_lock)
        {
            if (s_tried) return s_failure;
            s_tried = true;
            var r = Resolver = new NativeResolver();
            nint lib = r.TryLoad("cublasLt", "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so");
            if (lib == 0)
                return s_failure = "cuBLASLt (libcublasLt.so.13 or .12) not found: matrix products cannot run. Install the CUDA " +
                                   "toolkit's cuBLAS or set APB_CUDA_LIB_DIR / CUDA_HOME.\nSearched:\n" + r.TraceText;
            LibraryPath = r.Loaded["cublasLt"];
            try
            {
                cublasLtCreate = (delegate* unmanaged<nint*, int>)F(lib, "cublasLtCreate");
                cublasLtDestroy = (delegate* unmanaged<nint, int>)F(lib, "cublasLtDestroy");
                cublasLtGetVersion = (delegate* unmanaged<nuint>)F(lib, "cublasLtGetVersion");
                cublasLtMatmulDescCreate = (delegate* unmanaged<nint*, int, int, int>)F(lib, "cublasLtMatmulDescCreate");
                cublasLtMatmulDescDestroy = (delegate* unmanaged<nint, int>)F(lib, "cublasLtMatmulDescDestroy");
                cublasLtMatmulDescSetAttribute = (delegate* unmanaged<nint, int, void*, nuint, int>)F(lib, "cublasLtMatmulDescSetAttribute");
                cublasLtMatrixLayoutCreate = (delegate* unmanaged<nint*, int, ulong, ulong, long, int>)F(lib, "cublasLtMatrixLayoutCreate");
                cublasLtMatrixLayoutDestroy = (delegate* unmanaged<nint, int>)F(lib, "cublasLtMatrixLayoutDestroy");
                cublasLtMatmulPreferenceCreate = (delegate* unmanaged<nint*, int>)F(lib, "cublasLtMatmulPreferenceCreate");
                cublasLtMatmulPreferenceDestroy = (delegate* unmanaged<nint, int>)F(lib, "cublasLtMatmulPreferenceDestroy");
                cublasLtMatmulPreferenceSetAttribute = (delegate* unmanaged<nint, int, void*, nuint, int>)F(lib, "cublasLtMatmulPreferenceSetAttribute");
                cublasLtMatmulAlgoGetHeuristic = (delegate* unmanaged<nint, nint, nint, nint, nint, nint, nint, int, HeuristicResult*, int*, int>)F(lib, "cublasLtMatmulAlgoGetHeuristic");
                cublasLtMatmul = (delegate* unmanaged<nint, nint, void*, ulong, nint, ulong, nint, void*, ulong, nint, ulong, nint, void*, ulong, nuint, nint, int>)F(lib, "cublasLtMatmul");
                cublasLtGetStatusString = (delegate* unmanaged<int, byte*>)F(lib, "cublasLtGetStatusString");
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

    static nint F(nint lib, string name) => NativeResolver.Export(lib, "libcublasLt", name);

    public static void Check(int rc, string call)
    {
        if (rc == 0) return;
        string text = cublasLtGetStatusString != null ? Marshal.PtrToStringUTF8((nint)cublasLtGetStatusString(rc)) ?? "?" : "?";
        throw new CudaException($"{call} failed: cublasStatus {rc}: {text}");
    }

    /// <summary>e.g. 130001 for 13.0.1 (major x 10000 + minor x 100 + patch).</summary>
    public static string VersionText()
    {
        Initialize();
        ulong v = cublasLtGetVersion();
        return $"{v / 10000}.{v / 100 % 100}.{v % 100}";
    }
}
