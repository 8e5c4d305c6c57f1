using Apb.Backends;
using Apb.Backends.Cuda;
using Apb.Checkpoints;
using static Apb.Gpu.Tests.GpuCheck;

namespace Apb.Gpu.Tests;

/// <summary>
/// Every CudaBackend op of the model against the CpuBackend on random non-zero inputs over a grid of shapes, outputs
/// poisoned with NaN first so an unwritten element fails.
/// </summary>
public static class OpCases
{
    public static IEnumerable<GpuCase> All()
    {
        foreach (var dt in new[] { CudaDType.BF16, CudaDType.F32 })
            yield return new("ops", $"upload/download [1001, 37] {dt}", c => UploadDownload(c, dt));
        foreach (var dt in new[] { DType.BF16, DType.F16, DType.F32 })
            yield return new("ops", $"embed 37 ids of [1000, 264] {DTypes.Name(dt)}", c => Embed(c, dt, 264));
        yield return new("ops", "embed 37 ids of [1000, 100] bf16 (rows not whole 16-byte chunks)", c => Embed(c, DType.BF16, 100));
        // Rows of whole 16-byte chunks up to 8192 take the chunked kernels (1, 2 and 4 chunks per thread); 1001 and
        // 16384 take the column loop.
        foreach (var (rows, cols) in new[] { (1, 64), (33, 1000), (7, 8192), (130, 4096), (1, 3584), (3, 1001), (2, 16384) })
        {
            yield return new("ops", $"rms_norm [{rows}, {cols}]", c => RmsNorm(c, rows, cols));
            yield return new("ops", $"add_rms_norm [{rows}, {cols}]", c => AddRmsNorm(c, rows, cols));
        }
        int li = 0;
        foreach (var (m, n, k) in new[] { (1, 64, 96), (7, 256, 512), (333, 1000, 1024), (64, 4096, 4096), (1, 4096, 4096) })
            foreach (bool bias in new[] { false, true })
            {
                // Every weight dtype over the grid: f16 and f32 weights are converted to bf16 at load.
                var dt = (li++ % 3) switch { 0 => DType.BF16, 1 => DType.F16, _ => DType.F32 };
                yield return new("ops", $"linear M={m} N={n} K={k}{(bias ? " +bias" : "")} W {DTypes.Name(dt)}", c => Linear(c, m, n, k, bias, dt));
            }
        // APB_GEMM_TUNE's path: the first call of a prefill-sized shape runs every candidate algorithm, then the fastest.
        yield return new("ops", $"linear M={Gemm.TuneMinRows + 8} N=520 K=264 +bias, tuned (Gemm.Tune)", c => Linear(c, Gemm.TuneMinRows + 8, 520, 264, true, DType.BF16, tune: true));
        // gemv.cu at every M it takes (CudaBackend.GemvRowLimit; by default only M <= GemvDefaultRows use it): each
        // against the CPU and against cuBLASLt on the same device, at the Llama-3.1-8B widths.
        foreach (var (m, n, k) in new[] { (1, 1000, 1024), (2, 4096, 14336), (3, 72, 4096), (4, 1024, 4096), (1, 128256, 4096) })
            yield return new("ops", $"gemv linear M={m} N={n} K={k} +bias", c => Gemv(c, m, n, k));
        foreach (int m in new[] { 1, 2, 3, 4, 5 })
        {
            yield return new("ops", $"linears q/k/v M={m} [4096, 1024, 1024] x 4096 +bias", c => Linears(c, m, [4096, 1024, 1024], 4096));
            yield return new("ops", $"gated linear M={m} 2 x [1400, 1024] +bias", c => GatedLinear(c, m, 1400, 1024));
        }
        yield return new("ops", "linears 4 weights M=1 (two launches)", c => Linears(c, 1, [128, 264, 64, 8], 512));
        yield return new("ops", "add_in_place [17, 1000]", c => AddInPlace(c, 17, 1000));
        yield return new("ops", "silu_mul [17, 1000]", c => SiluMul(c, 17, 1000, outIsGate: false));
        yield return new("ops", "silu_mul (out = gate) [17, 1000]", c => SiluMul(c, 17, 1000, outIsGate: true));
        yield return new("ops", "silu_mul [3, 1001] (n % 8 = 3: the 16-byte kernel's tail)", c => SiluMul(c, 3, 1001, outIsGate: false));
        yield return new("ops", "silu_mul [2, 7] (an odd row width: the scalar kernel)", c => SiluMul(c, 2, 7, outIsGate: false, offset: 1));
        yield return new("ops", "silu [17, 1000]", c => Silu(c, 17, 1000));
        foreach (var (heads, d, theta, far) in new[] { (8, 64, 500000.0, false), (8, 128, 500000.0, true), (6, 16, 10000.0, true), (32, 128, 500000.0, true) })
            yield return new("ops", $"rope {heads} heads x d={d} theta {theta:G}, positions {(far ? "< 128K random" : "3..31")}", c => Rope(c, heads, d, theta, far));
        // Below CudaBackend.RopeRowsMinTokens the block-per-head kernel, from it the block-per-token one.
        foreach (var (t, heads, kv, d) in new[] { (1, 32, 8, 128), (29, 12, 2, 64), (3, 28, 4, 128), (300, 32, 8, 128), (17, 6, 2, 16), (16, 28, 4, 256) })
            yield return new("ops", $"rope_append {t} rows, {heads}/{kv} heads x d={d}", c => RopeAppend(c, t, heads, kv, d));
        foreach (var (rows, cols, scale) in new[] { (333, 1000, 1f), (1, 4096, 0.02f) })
            yield return new("ops", $"random fill [{rows}, {cols}] x {scale:G} = RandomValues on the host", c => RandomFillMatchesHost(c, rows, cols, scale));
        foreach (var dt in new[] { CudaDType.BF16, CudaDType.F32 })
            foreach (var (rows, cols) in new[] { (1, 7), (16, 128256), (5, 2048) })
                yield return new("ops", $"argmax rows [{rows}, {cols}] {dt} (ties, -inf, NaN)", c => ArgMaxRows(c, rows, cols, dt));
        foreach (var dt in new[] { CudaDType.BF16, CudaDType.F32 })
        {
            yield return new("ops", $"copy (window) [10, 200] of [20, 300] into [30, 500] {dt}", c => CopyWindow(c, dt));
            yield return new("ops", $"copy (rows) 17 rows of [20, 64] into [40, 64] {dt}", c => CopyRows(c, dt));
        }
    }

    /// <summary>
    /// The device's argmax against Sampler.ArgMax on the same (downloaded) values: random rows, plus rows whose maximum
    /// is tied (the lowest column wins), all -inf (0), and NaN before and at the maximum (NaN never wins).
    /// </summary>
    static void ArgMaxRows(GpuCheck c, int rows, int cols, CudaDType dt)
    {
        var x = c.Rand((long)rows * cols);
        for (int r = 0; r < rows; r++)
        {
            var row = x.AsSpan(r * cols, cols);
            switch (r % 4)
            {
                case 1: row[cols / 2] = 9f; row[cols - 1] = 9f; if (cols > 3) row[3] = 9f; break;
                case 2: row.Fill(float.NegativeInfinity); break;
                case 3: row[0] = float.NaN; row[cols / 3] = 7f; row[cols - 1] = float.NaN; break;
            }
        }
        var g = c.OnGpu(x, rows, cols, dt);
        var values = Down(c.Gpu, g);
        var got = new int[rows];
        c.Gpu.ArgMaxRows(g, got);
        // Compared as id + 1, exactly: a relative error needs a non-zero reference, and id 0 is a right answer here.
        var want = Enumerable.Range(0, rows).Select(r => Apb.Engine.Sampler.ArgMax(values.AsSpan(r * cols, cols)) + 1f).ToArray();
        c.Compare("ids + 1", got.Select(i => i + 1f).ToArray(), want, 0, "argmax");
    }

    static void UploadDownload(GpuCheck c, CudaDType dt)
    {
        // Exact for bf16-representable values, in both element types.
        var x = c.Rand(1001 * 37);
        c.Compare("round trip", Down(c.Gpu, c.OnGpu(x, 1001, 37, dt)), x, 0);
    }

    static void Embed(GpuCheck c, DType dt, int hidden)
    {
        int vocab = 1000, T = 37;
        var w = c.Weight("embed", c.Rand((long)vocab * hidden), [vocab, hidden], dt);
        var ids = Enumerable.Range(0, T).Select(i => i == 0 ? 0 : i == 1 ? vocab - 1 : c.Rng.Next(vocab)).ToArray();
        var co = c.Cpu.Allocate(T, hidden); c.Cpu.Embed(ids, c.Cpu.Load(w), co);
        var go = c.Poisoned(T, hidden); c.Gpu.Embed(ids, c.Gpu.Load(w), go);
        c.Compare("embed", Down(c.Gpu, go), Down(c.Cpu, co), dt == DType.BF16 ? 0 : 4e-3);
    }

    static void RmsNorm(GpuCheck c, int rows, int cols)
    {
        var x = c.Rand((long)rows * cols, 3f);
        var w = c.Weight("norm", c.Rand(cols), [cols], DType.BF16);
        var co = c.Cpu.Allocate(rows, cols); c.Cpu.RmsNorm(c.OnCpu(x, rows, cols), c.Cpu.Load(w), 1e-5f, co);
        var go = c.Poisoned(rows, cols); c.Gpu.RmsNorm(c.OnGpu(x, rows, cols), c.Gpu.Load(w), 1e-5f, go);
        c.Compare("rms_norm", Down(c.Gpu, go), Down(c.Cpu, co), Bf16Tolerance);
    }

    /// <summary>
    /// The fused residual add + norm: the updated residual and the normed rows. The CPU sums in fp32, the GPU rounds the sum
    /// to bf16 before normalizing it (as its unfused ops do): a bf16-rounding difference against the CPU, none against
    /// the GPU's own unfused pair (same arithmetic in the same order).
    /// </summary>
    static void AddRmsNorm(GpuCheck c, int rows, int cols)
    {
        var x = c.Rand((long)rows * cols, 3f); var y = c.Rand((long)rows * cols);
        var w = c.Weight("norm", c.Rand(cols), [cols], DType.BF16);
        var gw = c.Gpu.Load(w);
        var cx = c.OnCpu(x, rows, cols); var cn = c.Cpu.Allocate(rows, cols);
        c.Cpu.AddRmsNorm(cx, c.OnCpu(y, rows, cols), c.Cpu.Load(w), 1e-5f, cn);
        var gx = c.OnGpu(x, rows, cols); var gn = c.Poisoned(rows, cols);
        c.Gpu.AddRmsNorm(gx, c.OnGpu(y, rows, cols), gw, 1e-5f, gn);
        c.Compare("residual", Down(c.Gpu, gx), Down(c.Cpu, cx), Bf16Tolerance);
        c.Compare("normed", Down(c.Gpu, gn), Down(c.Cpu, cn), Bf16Tolerance);
        var ux = c.OnGpu(x, rows, cols); var un = c.Poisoned(rows, cols);
        c.Gpu.AddInPlace(ux, c.OnGpu(y, rows, cols)); c.Gpu.RmsNorm(ux, gw, 1e-5f, un);
        c.Compare("fused = add + rms_norm (cuda vs cuda)", Down(c.Gpu, gn), Down(c.Gpu, un), 0);
    }

    static void Linear(GpuCheck c, int m, int n, int k, bool bias, DType dt, bool tune = false)
    {
        if (!tune) { LinearOnce(c, m, n, k, bias, dt); return; }
        bool was = c.Gpu.GemmTune;
        c.Gpu.GemmTune = true;
        try { LinearOnce(c, m, n, k, bias, dt); }
        finally { c.Gpu.GemmTune = was; }
    }

    static void LinearOnce(GpuCheck c, int m, int n, int k, bool bias, DType dt)
    {
        var x = c.Rand((long)m * k);
        var wv = c.Weight("w", c.Rand((long)n * k, 1f / MathF.Sqrt(k)), [n, k], dt);
        var bv = bias ? c.Weight("b", c.Rand(n), [n], dt) : (WeightView?)null;
        var co = c.Cpu.Allocate(m, n);
        c.Cpu.Linear(c.OnCpu(x, m, k), c.Cpu.Load(wv), bv is { } b1 ? c.Cpu.Load(b1) : null, co);
        var go = c.Poisoned(m, n);
        c.Gpu.Linear(c.OnGpu(x, m, k), c.Gpu.Load(wv), bv is { } b2 ? c.Gpu.Load(b2) : null, go);
        c.Compare("linear", Down(c.Gpu, go), Down(c.Cpu, co), Bf16Tolerance, "cuBLASLt");
    }

    /// <summary>gemv.cu's product against the CPU and against cuBLASLt (the matrix-vector kernels off) on the same device.</summary>
    static void Gemv(GpuCheck c, int m, int n, int k)
    {
        var x = c.Rand((long)m * k);
        var w = c.Weight("w", c.Rand((long)n * k, 1f / MathF.Sqrt(k)), [n, k], DType.BF16);
        var b = c.Weight("b", c.Rand(n), [n], DType.BF16);
        var co = c.Cpu.Allocate(m, n);
        c.Cpu.Linear(c.OnCpu(x, m, k), c.Cpu.Load(w), c.Cpu.Load(b), co);
        var gx = c.OnGpu(x, m, k); var gw = c.Gpu.Load(w); var gb = c.Gpu.Load(b);
        var go = c.Poisoned(m, n);
        WithGemvRows(c, CudaBackend.GemvRowLimit, () => c.Gpu.Linear(gx, gw, gb, go));
        c.Compare("gemv vs cpu", Down(c.Gpu, go), Down(c.Cpu, co), Bf16Tolerance, "gemv.cu");
        var lt = c.Poisoned(m, n);
        WithoutGemv(c, () => c.Gpu.Linear(gx, gw, gb, lt));
        c.Compare("gemv vs cuBLASLt", Down(c.Gpu, go), Down(c.Gpu, lt), Bf16Tolerance, "gemv.cu");
    }

    static void WithoutGemv(GpuCheck c, Action work) => WithGemvRows(c, 0, work);

    /// <summary>Runs work with products of at most <paramref name="rows"/> rows through gemv.cu (0: none).</summary>
    static void WithGemvRows(GpuCheck c, int rows, Action work)
    {
        int saved = c.Gpu.GemvMaxRows;
        c.Gpu.GemvMaxRows = rows;
        try { work(); }
        finally { c.Gpu.GemvMaxRows = saved; }
    }

    /// <summary>Products of one input into several outputs (a layer's q, k and v), each with a bias but the last.</summary>
    static void Linears(GpuCheck c, int m, int[] widths, int k)
    {
        var x = c.Rand((long)m * k);
        var cx = c.OnCpu(x, m, k); var gx = c.OnGpu(x, m, k);
        var cpu = new List<LinearOutput>(); var gpu = new List<LinearOutput>();
        for (int i = 0; i < widths.Length; i++)
        {
            int n = widths[i];
            var w = c.Weight($"w{i}", c.Rand((long)n * k, 1f / MathF.Sqrt(k)), [n, k], DType.BF16);
            var b = i + 1 < widths.Length ? c.Weight($"b{i}", c.Rand(n), [n], DType.BF16) : (WeightView?)null;
            cpu.Add(new(c.Cpu.Load(w), b is { } b1 ? c.Cpu.Load(b1) : null, c.Cpu.Allocate(m, n)));
            gpu.Add(new(c.Gpu.Load(w), b is { } b2 ? c.Gpu.Load(b2) : null, c.Poisoned(m, n)));
        }
        ((IBackend)c.Cpu).Linears(cx, cpu.ToArray());
        WithGemvRows(c, CudaBackend.GemvRowLimit, () => c.Gpu.Linears(gx, gpu.ToArray()));
        for (int i = 0; i < widths.Length; i++)
            c.Compare($"output {i} [{m}, {widths[i]}]", Down(c.Gpu, gpu[i].Output), Down(c.Cpu, cpu[i].Output), Bf16Tolerance,
                m <= CudaBackend.GemvRowLimit ? "gemv.cu" : "cuBLASLt");
    }

    /// <summary>silu(x Wg^T + bg) * (x Wu^T): against the CPU's unfused ops, and against the device's unfused ops.</summary>
    static void GatedLinear(GpuCheck c, int m, int n, int k)
    {
        var x = c.Rand((long)m * k);
        var g = c.Weight("gate", c.Rand((long)n * k, 3f / MathF.Sqrt(k)), [n, k], DType.BF16);
        var u = c.Weight("up", c.Rand((long)n * k, 1f / MathF.Sqrt(k)), [n, k], DType.BF16);
        var gb = c.Weight("gate_bias", c.Rand(n), [n], DType.BF16);
        var co = c.Cpu.Allocate(m, n);
        ((IBackend)c.Cpu).GatedLinear(c.OnCpu(x, m, k), c.Cpu.Load(g), c.Cpu.Load(gb), c.Cpu.Load(u), null, c.Cpu.Allocate(m, n), co);
        var gx = c.OnGpu(x, m, k); var gg = c.Gpu.Load(g); var ggb = c.Gpu.Load(gb); var gu = c.Gpu.Load(u);
        var go = c.Poisoned(m, n);
        WithGemvRows(c, CudaBackend.GemvRowLimit, () => c.Gpu.GatedLinear(gx, gg, ggb, gu, null, c.Poisoned(m, n), go));
        string path = m <= CudaBackend.GemvRowLimit ? "gemv.cu fused" : "cuBLASLt + silu_mul";
        c.Compare("gated vs cpu", Down(c.Gpu, go), Down(c.Cpu, co), Bf16Tolerance, path);
        var unfused = c.Poisoned(m, n);
        WithoutGemv(c, () => c.Gpu.GatedLinear(gx, gg, ggb, gu, null, c.Poisoned(m, n), unfused));
        c.Compare("gated vs unfused", Down(c.Gpu, go), Down(c.Gpu, unfused), Bf16Tolerance, path);
    }

    static void AddInPlace(GpuCheck c, int rows, int cols)
    {
        var x = c.Rand((long)rows * cols); var y = c.Rand((long)rows * cols);
        var cx = c.OnCpu(x, rows, cols); c.Cpu.AddInPlace(cx, c.OnCpu(y, rows, cols));
        var gx = c.OnGpu(x, rows, cols); c.Gpu.AddInPlace(gx, c.OnGpu(y, rows, cols));
        c.Compare("add_in_place", Down(c.Gpu, gx), Down(c.Cpu, cx), Bf16Tolerance);
    }

    /// <summary>offset: the device tensors are rows offset.. of taller ones, so odd widths give addresses that are not 16-byte aligned.</summary>
    static void SiluMul(GpuCheck c, int rows, int cols, bool outIsGate, int offset = 0)
    {
        var gate = c.Rand((long)rows * cols, 3f); var up = c.Rand((long)rows * cols);
        var co = c.Cpu.Allocate(rows, cols); c.Cpu.SiluMul(c.OnCpu(gate, rows, cols), c.OnCpu(up, rows, cols), co);
        var pad = new float[(long)offset * cols];
        var gg = c.OnGpu([.. pad, .. gate], rows + offset, cols).RowSlice(offset, rows);
        var go = outIsGate ? gg : c.Poisoned(rows + offset, cols).RowSlice(offset, rows);
        c.Gpu.SiluMul(gg, c.OnGpu([.. pad, .. up], rows + offset, cols).RowSlice(offset, rows), go);
        c.Compare("silu_mul", Down(c.Gpu, go), Down(c.Cpu, co), Bf16Tolerance);
    }

    static void Silu(GpuCheck c, int rows, int cols)
    {
        var x = c.Rand((long)rows * cols, 3f);
        var cs = c.OnCpu(x, rows, cols); c.Cpu.Silu(cs);
        var gs = c.OnGpu(x, rows, cols); c.Gpu.Silu(gs);
        c.Compare("silu", Down(c.Gpu, gs), Down(c.Cpu, cs), Bf16Tolerance);
    }

    static void Rope(GpuCheck c, int heads, int d, double theta, bool far)
    {
        const int T = 29;
        var table = new RopeTable(new RopeConfig(RopeType.Default, theta), d);
        var positions = Enumerable.Range(0, T).Select(i => far ? c.Rng.Next(131072) : i + 3).ToArray();
        var x = c.Rand((long)T * heads * d);
        var cx = c.OnCpu(x, T, heads * d); c.Cpu.Rope(cx, heads, positions, table);
        var gx = c.OnGpu(x, T, heads * d); c.Gpu.Rope(gx, heads, positions, table);
        c.Compare("rope", Down(c.Gpu, gx), Down(c.Cpu, cx), Bf16Tolerance);
    }

    /// <summary>
    /// The fused rotation + KV append against the CPU, and bit for bit against the device's own rope, rope and row
    /// copies, with the destination rows in the middle of a NaN-poisoned cache.
    /// </summary>
    static void RopeAppend(GpuCheck c, int t, int heads, int kv, int d)
    {
        var table = new RopeTable(new RopeConfig(RopeType.Default, 500000.0), d);
        var positions = Enumerable.Range(0, t).Select(_ => c.Rng.Next(131072)).ToArray();
        var q = c.Rand((long)t * heads * d); var k = c.Rand((long)t * kv * d); var v = c.Rand((long)t * kv * d);
        var cq = c.OnCpu(q, t, heads * d); var ck = c.OnCpu(k, t, kv * d);
        var cKd = c.Cpu.Allocate(t, kv * d); var cVd = c.Cpu.Allocate(t, kv * d);
        ((IBackend)c.Cpu).RopeAppend(cq, ck, c.OnCpu(v, t, kv * d), heads, kv, positions, table, cKd, cVd);

        var gq = c.OnGpu(q, t, heads * d); var gk = c.OnGpu(k, t, kv * d); var gv = c.OnGpu(v, t, kv * d);
        var cacheK = c.Poisoned(t + 10, kv * d); var cacheV = c.Poisoned(t + 10, kv * d);
        c.Gpu.RopeAppend(gq, gk, gv, heads, kv, positions, table, cacheK.RowSlice(5, t), cacheV.RowSlice(5, t));
        string kernel = t >= CudaBackend.RopeRowsMinTokens ? "apb_rope_append_rows" : "apb_rope_append";
        c.Compare("q", Down(c.Gpu, gq), Down(c.Cpu, cq), Bf16Tolerance, kernel);
        c.Compare("k in place", Down(c.Gpu, gk), Down(c.Cpu, ck), Bf16Tolerance, kernel);
        c.Compare("k rows", Down(c.Gpu, cacheK.RowSlice(5, t)), Down(c.Cpu, cKd), Bf16Tolerance, kernel);
        c.Compare("v rows", Down(c.Gpu, cacheV.RowSlice(5, t)), Down(c.Cpu, cVd), Bf16Tolerance, kernel);

        var uq = c.OnGpu(q, t, heads * d); var uk = c.OnGpu(k, t, kv * d);
        c.Gpu.Rope(uq, heads, positions, table); c.Gpu.Rope(uk, kv, positions, table);
        c.Compare("q = rope (cuda vs cuda)", Down(c.Gpu, gq), Down(c.Gpu, uq), 0, kernel);
        c.Compare("k rows = rope (cuda vs cuda)", Down(c.Gpu, cacheK.RowSlice(5, t)), Down(c.Gpu, uk), 0, kernel);
        c.Compare("v rows = v", Down(c.Gpu, cacheV.RowSlice(5, t)), Down(c.Gpu, gv), 0, kernel);
        var before = Down(c.Gpu, cacheK.RowSlice(0, 5)).Concat(Down(c.Gpu, cacheK.RowSlice(5 + t, 5))).ToArray();
        if (before.Any(f => !float.IsNaN(f))) throw new InvalidOperationException("rope_append wrote outside its rows of the cache");
    }

    /// <summary>
    /// random.cu fills random-weight models and benchmark inputs on the device; RandomValues computes the same values on
    /// the host (CPU backend, tests). Both must give the same bits, or a random model differs between the backends.
    /// </summary>
    static void RandomFillMatchesHost(GpuCheck c, int rows, int cols, float scale)
    {
        const ulong seed = 7, stream = 3;
        var t = c.Gpu.Allocate(rows, cols, CudaDType.BF16);
        RandomFill.Fill(t, seed, stream, scale);
        ulong key = RandomValues.Key(seed, stream);
        var want = new float[(long)rows * cols];
        for (long i = 0; i < want.Length; i++) want[i] = Bf16(RandomValues.Value(key, i, scale, 0f));
        c.Compare("device fill vs host values", Down(c.Gpu, t), want, 0);
    }

    static void CopyWindow(GpuCheck c, CudaDType dt)
    {
        var s = c.Rand(20 * 300); var d0 = c.Rand(30 * 500);
        var cd = c.OnCpu(d0, 30, 500); c.Cpu.Copy(c.OnCpu(s, 20, 300), 3, 7, cd, 5, 11, 10, 200);
        var gd = c.OnGpu(d0, 30, 500, dt); c.Gpu.Copy(c.OnGpu(s, 20, 300, dt), 3, 7, gd, 5, 11, 10, 200);
        c.Compare("copy", Down(c.Gpu, gd), Down(c.Cpu, cd), 0);
    }

    static void CopyRows(GpuCheck c, CudaDType dt)
    {
        var s = c.Rand(20 * 64); var w0 = c.Rand(40 * 64);
        var cw = c.OnCpu(w0, 40, 64); c.Cpu.Copy(c.OnCpu(s, 20, 64), 2, 0, cw, 9, 0, 17, 64);
        var gw = c.OnGpu(w0, 40, 64, dt); c.Gpu.Copy(c.OnGpu(s, 20, 64, dt), 2, 0, gw, 9, 0, 17, 64);
        c.Compare("copy", Down(c.Gpu, gw), Down(c.Cpu, cw), 0);
    }
}
