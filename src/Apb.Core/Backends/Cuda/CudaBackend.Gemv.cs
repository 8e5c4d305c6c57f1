using System.Runtime.InteropServices;

namespace Apb.Backends.Cuda;

/// <summary>
/// Products of a few rows (a decode step) through our matrix-vector kernels (Kernels/gemv.cu) instead of cuBLASLt:
/// one warp per output feature streaming its weight row, q/k/v of a layer in one launch, and the gate and up products
/// fused with SiLU. Notes and timings: docs/kernels/gemv.md.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    const string GemvFile = "gemv.cu";

    /// <summary>The most rows a kernel of gemv.cu takes (it is instantiated for 1 to 4).</summary>
    public const int GemvRowLimit = 4;

    /// <summary>
    /// The default <see cref="GemvMaxRows"/>: up to 2 rows gemv.cu is ahead of cuBLASLt on every step's products taken
    /// together; at 4 rows version 2 lost to cuBLASLt on down_proj and the LM head (bench/results/gemv-20261203/call2).
    /// </summary>
    public const int GemvDefaultRows = 2;

    /// <summary>
    /// Products of at most this many rows go through gemv.cu; more, cuBLASLt (0: always cuBLASLt). APB_GEMV_MAX_ROWS
    /// sets it, for comparisons (`apb bench kernel gemv`).
    /// </summary>
    public int GemvMaxRows { get; set; } = GemvRowsFromEnvironment();

    static int GemvRowsFromEnvironment()
    {
        string? s = Environment.GetEnvironmentVariable("APB_GEMV_MAX_ROWS");
        if (string.IsNullOrEmpty(s)) return GemvDefaultRows;
        if (!int.TryParse(s, out int n) || n < 0 || n > GemvRowLimit)
            throw new ApbException($"APB_GEMV_MAX_ROWS={s}: expected an integer from 0 (always cuBLASLt) to {GemvRowLimit}");
        return n;
    }

    // One weight's share of a launch, as gemv.cu's GemvPart lays it out (3 pointers, then n and padding: 32 bytes).
    [StructLayout(LayoutKind.Sequential)]
    struct GemvPart
    {
        public ulong W, Bias, Y;
        public int N, Pad;
    }

    const int GemvWarpsPerBlock = 4;
    static readonly string[] s_gemv = ["", "apb_gemv_m1", "apb_gemv_m2", "apb_gemv_m3", "apb_gemv_m4"];
    static readonly string[] s_gemvGated = ["", "apb_gemv_gated_m1", "apb_gemv_gated_m2", "apb_gemv_gated_m3", "apb_gemv_gated_m4"];

    /// <summary>Whether x [rows, k] goes through gemv.cu: few rows, and rows of whole 16-byte chunks.</summary>
    bool UsesGemv(CudaTensor x) => x.Rows >= 1 && x.Rows <= GemvMaxRows && x.Cols % 8 == 0;

    /// <summary>
    /// One product's shapes checked (x [M, K] times W^T [K, N] into output [M, N], bias of N) and its addresses: what every
    /// Linear checks, whichever of gemv.cu and cuBLASLt then runs it.
    /// </summary>
    GemvPart Part(CudaTensor x, IWeight w, IWeight? bias, Tensor output, string op)
    {
        var wt = C(w); var o = Bf16(output, op);
        if (x.Cols != wt.Cols || o.Cols != wt.Rows || o.Rows != x.Rows)
            throw new ArgumentException($"{op} {wt.Name}: x {x} times W^T [{wt.Cols}, {wt.Rows}] into {o}");
        if (bias != null && (long)bias.Rows * bias.Cols != wt.Rows)
            throw new ArgumentException($"{op} {wt.Name}: bias {bias.Name} has {bias.Rows * bias.Cols} elements for {wt.Rows} outputs");
        return new GemvPart { W = wt.Ptr, Bias = bias is null ? 0 : C(bias).Ptr, Y = o.Ptr, N = wt.Rows };
    }

    void LaunchGemv(string fn, long rows, void** args)
    {
        uint grid = (uint)((rows + GemvWarpsPerBlock - 1) / GemvWarpsPerBlock);
        Context.Launch(Context.Function(GemvFile, fn), fn, (grid, 1, 1), 32 * GemvWarpsPerBlock, 0, args);
    }

    public void Linears(Tensor x, ReadOnlySpan<LinearOutput> outputs)
    {
        var xs = Bf16(x, "linear");
        if (!UsesGemv(xs))
        {
            foreach (var o in outputs) Linear(x, o.Weight, o.Bias, o.Output);
            return;
        }
        // Three weights per launch: what gemv.cu's kernels take (a layer's q, k and v); a missing one has no rows.
        for (int i = 0; i < outputs.Length; i += 3)
            Gemv(xs, PartAt(xs, outputs, i), PartAt(xs, outputs, i + 1), PartAt(xs, outputs, i + 2));
    }

    GemvPart PartAt(CudaTensor x, ReadOnlySpan<LinearOutput> outputs, int i) =>
        i < outputs.Length ? Part(x, outputs[i].Weight, outputs[i].Bias, outputs[i].Output, "linear") : default;

    void Gemv(CudaTensor x, GemvPart a, GemvPart b, GemvPart c)
    {
        Enter();
        ulong xp = x.Ptr;
        int k = x.Cols;
        void** args = stackalloc void*[] { &xp, &k, &a, &b, &c };
        LaunchGemv(s_gemv[x.Rows], (long)a.N + b.N + c.N, args);
    }

    public void GatedLinear(Tensor x, IWeight gate, IWeight? gateBias, IWeight up, IWeight? upBias, Tensor upScratch, Tensor output)
    {
        var xs = Bf16(x, "gated linear");
        if (!UsesGemv(xs))
        {
            IBackend.GatedLinearUnfused(this, x, gate, gateBias, up, upBias, upScratch, output);
            return;
        }
        // Both checked against output: the up rows must match the gate rows one for one.
        var g = Part(xs, gate, gateBias, output, "gated linear");
        var u = Part(xs, up, upBias, output, "gated linear");
        Enter();
        ulong xp = xs.Ptr;
        int k = xs.Cols;
        void** args = stackalloc void*[] { &xp, &k, &g, &u };
        LaunchGemv(s_gemvGated[xs.Rows], g.N, args);
    }
}
