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
        /// <summary>Set until the first call times them (<see cref="Tune"/>); null once chosen or when not tuning.</summary>
        public CublasLt.HeuristicResult[]? Candidates;
    }

    /// <summary>
    /// APB_GEMM_TUNE=1: a plan for a product of at least <see cref="TuneMinRows"/> rows (a prefill's) times cuBLASLt's
    /// first <see cref="TuneCandidates"/> heuristic answers on its first call, with that call's own operands, and keeps
    /// the fastest; one line per tuned shape on stderr. Off (the heuristic's first answer) when unset or 0: measured, it
    /// took 0.5 % off a 128K prefill of Llama-3.1-8B (docs/kernels/prefill-other.md), and a plan is per row count, so
    /// a server would pay the timing (1.76 s at 128K, by that run's tuning lines) for every new prompt length.
    /// </summary>
    public bool Tune { get; set; } = ParseTune(Environment.GetEnvironmentVariable("APB_GEMM_TUNE"));
    public const int TuneMinRows = 2048, TuneCandidates = 8;

    /// <summary>APB_GEMM_TUNE's value: unset, empty or 0 is off, 1 is on, anything else an error that says so.</summary>
    internal static bool ParseTune(string? s)
    {
        return s switch
        {
            null or "" or "0" => false,
            "1" => true,
            _ => throw new ApbException($"APB_GEMM_TUNE={s}: expected 1 (time cuBLASLt's candidate algorithms on a prefill's first call of each shape) or 0"),
        };
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
        if (plan.Candidates is { } candidates)
        {
            plan.Candidates = null;
            plan.Algo = Fastest(candidates, plan, x, w, y, M, N, K);
        }
        nint timed = _ctx.Times?.Begin() ?? 0;
        Matmul(plan, plan.Algo, x, w, y, M, N, K);
        _ctx.Times?.End("cublasLtMatmul", timed);
    }

    void Matmul(Plan plan, CublasLt.HeuristicResult algo, ulong x, ulong w, ulong y, int M, int N, int K)
    {
        float alpha = 1f, beta = 0f;
        CublasLt.Check(CublasLt.cublasLtMatmul(_handle, plan.Desc, &alpha, w, plan.A, x, plan.B, &beta, y, plan.D, y, plan.D,
            algo.Algo, _workspace, (nuint)_workspaceBytes, _ctx.Stream), $"cublasLtMatmul(M={M}, N={N}, K={K})");
    }

    /// <summary>
    /// The candidate with the least median time over 3 runs after one warm-up, on the call's own operands (the product
    /// overwrites y with the same values each time: beta is 0). Synchronizes the stream: a prefill's first call only.
    /// </summary>
    CublasLt.HeuristicResult Fastest(CublasLt.HeuristicResult[] candidates, Plan plan, ulong x, ulong w, ulong y, int M, int N, int K)
    {
        nint start, end;
        Driver.Check(Driver.cuEventCreate(&start, Driver.CU_EVENT_DEFAULT), "cuEventCreate (gemm tuning)");
        Driver.Check(Driver.cuEventCreate(&end, Driver.CU_EVENT_DEFAULT), "cuEventCreate (gemm tuning)");
        try
        {
            var ms = new double[candidates.Length];
            var runs = new double[3];
            for (int i = 0; i < candidates.Length; i++)
            {
                Matmul(plan, candidates[i], x, w, y, M, N, K);
                for (int r = 0; r < runs.Length; r++)
                {
                    Driver.Check(Driver.cuEventRecord(start, _ctx.Stream), "cuEventRecord (gemm tuning)");
                    Matmul(plan, candidates[i], x, w, y, M, N, K);
                    Driver.Check(Driver.cuEventRecord(end, _ctx.Stream), "cuEventRecord (gemm tuning)");
                    Driver.Check(Driver.cuEventSynchronize(end), "cuEventSynchronize (gemm tuning)");
                    float t;
                    Driver.Check(Driver.cuEventElapsedTime(&t, start, end), "cuEventElapsedTime (gemm tuning)");
                    runs[r] = t;
                }
                Array.Sort(runs);
                ms[i] = runs[runs.Length / 2];
            }
            int best = Array.IndexOf(ms, ms.Min());
            Console.Error.WriteLine($"gemm tune M={M} N={N} K={K}: candidate {best} of {candidates.Length} at {ms[best]:F3} ms " +
                $"(the heuristic's first: {ms[0]:F3} ms; all: {string.Join(" ", ms.Select(t => t.ToString("F3")))})");
            return candidates[best];
        }
        finally
        {
            Driver.cuEventDestroy(start);
            Driver.cuEventDestroy(end);
        }
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
        bool tune = Tune && M >= TuneMinRows;
        var results = new CublasLt.HeuristicResult[tune ? TuneCandidates : 1];
        int found = 0, rc;
        fixed (CublasLt.HeuristicResult* r = results)
            rc = CublasLt.cublasLtMatmulAlgoGetHeuristic(_handle, desc, a, b, d, d, pref, results.Length, r, &found);
        CublasLt.cublasLtMatmulPreferenceDestroy(pref);
        CublasLt.Check(rc, $"cublasLtMatmulAlgoGetHeuristic(M={M}, N={N}, K={K}, bias={bias})");
        if (found == 0)
            throw new ApbException($"cuBLASLt has no bf16 algorithm for M={M}, N={N}, K={K} (bias={bias}): check that the dimensions are multiples of 8");
        p.Desc = desc; p.A = a; p.B = b; p.D = d; p.Algo = results[0];
        if (tune && found > 1) p.Candidates = results[..found];
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
