using Apb.Backends.Cuda.Native;

namespace Apb.Backends.Cuda;

/// <summary>
/// y[M, N] = x[M, K] W[N, K]^T (+ bias[N]) through cuBLASLt: bf16 operands and output, fp32 accumulation.
/// cuBLASLt is column-major, so we ask it for y^T = W x^T: A = W (K x N column-major, transposed), B = x^T (K x M
/// column-major, as stored), D = y^T (N x M column-major, which is y row-major). The bias epilogue adds bias[n] to row n
/// of D, i.e. to every output feature. Descriptors and the chosen algorithm are cached per (M, N, K, bias).
/// </summary>
public sealed unsafe class Gemm : IDisposable
{
    readonly CudaContext _ctx;
    readonly nint _handle;
    readonly ulong _workspace;
    readonly long _workspaceBytes;
    readonly DeviceMemory _memory;
    readonly Dictionary<(int M, int N, int K, bool Bias), Plan> _plans = new();

    sealed class Plan
    {
        public nint Desc, A, B, D;
        public CublasLt.HeuristicResult Algo;
    }

    public Gemm(CudaContext ctx, DeviceMemory memory)
    {
        _ctx = ctx; _memory = memory;
        CublasLt.Initialize();
        nint h;
        CublasLt.Check(CublasLt.cublasLtCreate(&h), "cublasLtCreate");
        _handle = h;
        // 32 MiB is what cuBLAS recommends for Hopper; the heuristic is told so it can pick split-K / stream-K kernels.
        _workspaceBytes = 32L << 20;
        _workspace = memory.Rent(_workspaceBytes, "cuBLASLt workspace");
    }

    public void Run(ulong x, ulong w, ulong? bias, ulong y, int M, int N, int K)
    {
        if (M == 0 || N == 0) return;
        var plan = GetPlan(M, N, K, bias.HasValue);
        if (bias is ulong b)
            CublasLt.Check(CublasLt.cublasLtMatmulDescSetAttribute(plan.Desc, CublasLt.CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, (nuint)sizeof(ulong)),
                "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
        float alpha = 1f, beta = 0f;
        var algo = plan.Algo;
        nint timed = _ctx.Times?.Begin() ?? 0;
        CublasLt.Check(CublasLt.cublasLtMatmul(_handle, plan.Desc, &alpha, w, plan.A, x, plan.B, &beta, y, plan.D, y, plan.D,
            algo.Algo, _workspace, (nuint)_workspaceBytes, _ctx.Stream), $"cublasLtMatmul(M={M}, N={N}, K={K})");
        _ctx.Times?.End("cublasLtMatmul", timed);
    }

    Plan GetPlan(int M, int N, int K, bool bias)
    {
        if (_plans.TryGetValue((M, N, K, bias), out var p)) return p;
        p = new Plan();
        nint desc, a, b, d, pref;
        CublasLt.Check(CublasLt.cublasLtMatmulDescCreate(&desc, CublasLt.CUBLAS_COMPUTE_32F, CublasLt.CUDA_R_32F), "cublasLtMatmulDescCreate");
        int opT = CublasLt.CUBLAS_OP_T, opN = CublasLt.CUBLAS_OP_N;
        CublasLt.Check(CublasLt.cublasLtMatmulDescSetAttribute(desc, CublasLt.CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof(int)), "set TRANSA");
        CublasLt.Check(CublasLt.cublasLtMatmulDescSetAttribute(desc, CublasLt.CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof(int)), "set TRANSB");
        if (bias)
        {
            int epi = CublasLt.CUBLASLT_EPILOGUE_BIAS;
            CublasLt.Check(CublasLt.cublasLtMatmulDescSetAttribute(desc, CublasLt.CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(int)), "set EPILOGUE");
        }
        CublasLt.Check(CublasLt.cublasLtMatrixLayoutCreate(&a, CublasLt.CUDA_R_16BF, (ulong)K, (ulong)N, K), "cublasLtMatrixLayoutCreate(A)");
        CublasLt.Check(CublasLt.cublasLtMatrixLayoutCreate(&b, CublasLt.CUDA_R_16BF, (ulong)K, (ulong)M, K), "cublasLtMatrixLayoutCreate(B)");
        CublasLt.Check(CublasLt.cublasLtMatrixLayoutCreate(&d, CublasLt.CUDA_R_16BF, (ulong)N, (ulong)M, N), "cublasLtMatrixLayoutCreate(D)");
        CublasLt.Check(CublasLt.cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
        ulong ws = (ulong)_workspaceBytes;
        CublasLt.Check(CublasLt.cublasLtMatmulPreferenceSetAttribute(pref, CublasLt.CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ulong)), "set MAX_WORKSPACE_BYTES");
        CublasLt.HeuristicResult result;
        int found = 0;
        int rc = CublasLt.cublasLtMatmulAlgoGetHeuristic(_handle, desc, a, b, d, d, pref, 1, &result, &found);
        CublasLt.cublasLtMatmulPreferenceDestroy(pref);
        CublasLt.Check(rc, $"cublasLtMatmulAlgoGetHeuristic(M={M}, N={N}, K={K}, bias={bias})");
        if (found == 0)
            throw new ApbException($"cuBLASLt has no bf16 algorithm for M={M}, N={N}, K={K} (bias={bias}): check that the dimensions are multiples of 8");
        p.Desc = desc; p.A = a; p.B = b; p.D = d; p.Algo = result;
        _plans[(M, N, K, bias)] = p;
        return p;
    }

    public void Dispose()
    {
        foreach (var p in _plans.Values)
        {
            CublasLt.cublasLtMatrixLayoutDestroy(p.A);
            CublasLt.cublasLtMatrixLayoutDestroy(p.B);
            CublasLt.cublasLtMatrixLayoutDestroy(p.D);
            CublasLt.cublasLtMatmulDescDestroy(p.Desc);
        }
        _plans.Clear();
        CublasLt.cublasLtDestroy(_handle);
    }
}
