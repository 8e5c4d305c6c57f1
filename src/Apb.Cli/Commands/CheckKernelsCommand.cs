using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text.Json;
using Apb.Backends;
using Apb.Backends.Cpu;
using Apb.Backends.Cuda;
using Apb.Checkpoints;
using Apb.Engine;
using Apb.Model;
using Apb.Runtime;

namespace Apb.Cli.Commands;

/// <summary>
/// `apb check-kernels`: every CudaBackend op against the fp32 CpuBackend on fresh random non-zero inputs over a grid of
/// shapes, outputs poisoned with NaN first so an unwritten element fails; then each fixture model's logits and greedy
/// continuation on cuda vs cpu; optionally (--bench) the attention kernels timed with CUDA events. The split-KV decode
/// kernel's cases and timings live in CheckKernelsCommand.Decode.cs.
/// Attention uses FlashAttention's rule: our error against the fp32 reference may be at most twice the error of a naive
/// bf16 implementation against the same reference, plus a small floor. That separates bugs from rounding.
/// Inputs are rounded to bf16 before either backend sees them, so both compute from identical values.
/// </summary>
static partial class CheckKernelsCommand
{
    public static Command Create(Io io)
    {
        var device = new Option<string>("--device") { Description = "the GPU to check, cuda or cuda:N", DefaultValueFactory = _ => "cuda:0" };
        var output = new Option<string?>("--out", "-o") { Description = "write the results as JSON to this file" };
        var bench = new Option<bool>("--bench") { Description = "also time attention (16K/64K/128K, 32 q heads, 8 kv heads, d=128, causal), decode attention (1 query row against those lengths) and a bf16 GEMM" };
        var lengths = new Option<string>("--bench-lengths") { Description = "comma-separated sequence lengths for --bench", DefaultValueFactory = _ => "16384,65536,131072" };
        var models = new Option<string?>("--models") { Description = "comma-separated model folders for the end-to-end check (default: tests/fixtures/models/*)" };
        var seed = new Option<int>("--seed") { Description = "random seed (default: from the clock, printed)", DefaultValueFactory = _ => Environment.TickCount & 0xffff };
        var cmd = new Command("check-kernels", "check every CUDA op against the CPU reference (and optionally time attention)")
            { device, output, bench, lengths, models, seed };
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            int ordinal = CommonOptions.CudaOrdinal(r.GetValue(device)!) ?? throw new ApbException("--device must be cuda or cuda:N");
            var lens = r.GetValue(lengths)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
            using var checker = new Checker(io, ordinal, r.GetValue(seed));
            return checker.Run(r.GetValue(output), r.GetValue(bench), lens, r.GetValue(models));
        }));
        return cmd;
    }

    sealed record Result(string Group, string Op, string Shape, string Kernel, double Error, double Limit, bool Pass, string Note = "");
    sealed record Timing(string Name, string Shape, double MedianMs, double MinMs, double Tflops, int Repeats, double GBps = 0);

    sealed unsafe partial class Checker : IDisposable
    {
        readonly Io _io;
        readonly int _seed;
        readonly Random _rng;
        readonly CudaBackend _gpu;
        readonly CpuBackend _cpu = new();
        readonly List<Result> _results = new();
        readonly List<Timing> _timings = new();
        readonly List<nint> _native = new();

        public Checker(Io io, int ordinal, int seed)
        {
            _io = io; _seed = seed; _rng = new Random(seed);
            _gpu = new CudaBackend(ordinal);
        }

        public int Run(string? outPath, bool bench, int[] lengths, string? models)
        {
            var dev = _gpu.Context.Device;
            _io.Err.WriteLine($"check-kernels on {_gpu.Name}: {dev.Name} (compute {dev.ComputeCapability}, {_gpu.Context.Arch}), seed {_seed}");
            var total = System.Diagnostics.Stopwatch.StartNew();
            Step("ops", OpChecks);
            Step("attention", AttentionChecks);
            Step("decode", DecodeChecks);
            Step("models", () => ModelChecks(models));
            if (bench) Step("bench", () => { Bench(lengths); BenchDecode(lengths); });
            Print();
            if (outPath != null) WriteJson(outPath, total.Elapsed.TotalSeconds);
            int failed = _results.Count(r => !r.Pass);
            _io.Out.WriteLine($"check-kernels: {_results.Count - failed} passed, {failed} failed ({total.Elapsed.TotalSeconds:F1} s, seed {_seed})");
            return failed == 0 ? 0 : 1;
        }

        void Step(string name, Action a)
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            try { a(); }
            catch (Exception e) when (e is ApbException or ArgumentException or InvalidOperationException)
            {
                // A crash in one group must not hide the others' results: record it as a failure and go on.
                _results.Add(new Result(name, "(group)", "", "", double.NaN, 0, false, $"{e.GetType().Name}: {e.Message}"));
                _io.Err.WriteLine($"  {name}: FAILED with {e.GetType().Name}: {e.Message}");
                try { _gpu.Synchronize(); } catch (ApbException) { }
            }
            _io.Err.WriteLine($"  {name}: {sw.Elapsed.TotalSeconds:F1} s");
        }

        // ------------------------------------------------------------------------------------------------ helpers

        float[] Rand(long n, float scale = 1f)
        {
            var a = new float[n];
            for (long i = 0; i < n; i++)
            {
                // Normal, never exactly zero; rounded to bf16 so that both backends start from the same numbers.
                double u1 = 1.0 - _rng.NextDouble(), u2 = _rng.NextDouble();
                float f = (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2)) * scale;
                if (f == 0) f = 1e-3f;
                a[i] = DTypes.BF16ToFloat(DTypes.FloatToBF16(f));
            }
            return a;
        }

        Tensor Cpu(float[] data, int rows, int cols)
        {
            var t = _cpu.Allocate(rows, cols);
            _cpu.Upload(data, t);
            return t;
        }

        Tensor Gpu(float[] data, int rows, int cols, CudaDType dtype = CudaDType.BF16)
        {
            var t = _gpu.Allocate(rows, cols, dtype);
            _gpu.Upload(data, t);
            return t;
        }

        Tensor GpuPoisoned(int rows, int cols, CudaDType dtype = CudaDType.BF16)
        {
            // NaN everywhere: an element no kernel writes stays NaN and fails the comparison.
            var t = _gpu.Allocate(rows, cols, dtype);
            var nan = new float[(long)rows * cols];
            Array.Fill(nan, float.NaN);
            _gpu.Upload(nan, t);
            return t;
        }

        float[] Down(IBackend b, Tensor t)
        {
            var a = new float[(long)t.Rows * t.Cols];
            b.Download(t, a);
            return a;
        }

        /// <summary>A weight in host memory with the given checkpoint dtype, as the memory-mapped file would hold it.</summary>
        WeightView Weight(string name, float[] data, long[] shape, DType dtype)
        {
            int size = DTypes.Size(dtype);
            nint p = (nint)NativeMemory.Alloc((nuint)(data.Length * (long)size));
            _native.Add(p);
            for (int i = 0; i < data.Length; i++)
            {
                switch (dtype)
                {
                    case DType.F32: ((float*)p)[i] = data[i]; break;
                    case DType.F16: ((Half*)p)[i] = (Half)data[i]; break;
                    default: ((ushort*)p)[i] = DTypes.FloatToBF16(data[i]); break;
                }
            }
            return new WeightView(name, dtype, shape, (byte*)p);
        }

        static double RelErr(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
        {
            double num = 0, den = 0;
            for (int i = 0; i < a.Length; i++)
            {
                double d = (double)a[i] - b[i];
                num += d * d; den += (double)b[i] * b[i];
            }
            return den == 0 ? Math.Sqrt(num) : Math.Sqrt(num / den);
        }

        static int CountNaN(ReadOnlySpan<float> a)
        {
            int n = 0;
            foreach (var f in a) if (float.IsNaN(f)) n++;
            return n;
        }

        void Compare(string group, string op, string shape, float[] got, float[] want, double limit, string kernel = "")
        {
            int nan = CountNaN(got);
            double err = nan > 0 ? double.NaN : RelErr(got, want);
            _results.Add(new Result(group, op, shape, kernel, err, limit, nan == 0 && err <= limit,
                nan > 0 ? $"{nan} of {got.Length} elements NaN (unwritten or overflow)" : ""));
        }

        // ------------------------------------------------------------------------------------------------ ops

        void OpChecks()
        {
            const double Tol = 1e-2; // bf16 output rounding is 2^-9 relative; anything near 1e-2 is a bug, not rounding

            // Upload/download: exact for bf16-representable values, in both element types.
            foreach (var dt in new[] { CudaDType.BF16, CudaDType.F32 })
            {
                var x = Rand(1001 * 37);
                Compare("ops", "upload/download", $"[1001, 37] {dt}", Down(_gpu, Gpu(x, 1001, 37, dt)), x, 0);
            }

            // Embedding, with each weight dtype (f16/f32 are converted to bf16 on the GPU at load).
            foreach (var dt in new[] { DType.BF16, DType.F16, DType.F32 })
            {
                int vocab = 1000, hidden = 264, T = 37;
                var table = Rand((long)vocab * hidden);
                var w = Weight("embed", table, [vocab, hidden], dt);
                var ids = Enumerable.Range(0, T).Select(i => i == 0 ? 0 : i == 1 ? vocab - 1 : _rng.Next(vocab)).ToArray();
                var co = _cpu.Allocate(T, hidden); _cpu.Embed(ids, _cpu.Load(w), co);
                var go = GpuPoisoned(T, hidden); _gpu.Embed(ids, _gpu.Load(w), go);
                Compare("ops", "embed", $"{T} ids, [{vocab}, {hidden}] {DTypes.Name(dt)}", Down(_gpu, go), Down(_cpu, co), dt == DType.BF16 ? 0 : 4e-3);
            }

            foreach (var (rows, cols) in new[] { (1, 64), (33, 1000), (7, 8192), (130, 4096) })
            {
                var x = Rand((long)rows * cols, 3f);
                var g = Rand(cols);
                var w = Weight("norm", g, [cols], DType.BF16);
                var co = _cpu.Allocate(rows, cols); _cpu.RmsNorm(Cpu(x, rows, cols), _cpu.Load(w), 1e-5f, co);
                var go = GpuPoisoned(rows, cols); _gpu.RmsNorm(Gpu(x, rows, cols), _gpu.Load(w), 1e-5f, go);
                Compare("ops", "rms_norm", $"[{rows}, {cols}]", Down(_gpu, go), Down(_cpu, co), Tol);

                // The fused residual add + norm: both the updated residual and the normed rows. The CPU sums in fp32, the
                // GPU rounds the sum to bf16 before normalizing it (as the unfused GPU ops do): a bf16-rounding difference.
                var y = Rand((long)rows * cols);
                var cx = Cpu(x, rows, cols); var cn = _cpu.Allocate(rows, cols);
                _cpu.AddRmsNorm(cx, Cpu(y, rows, cols), _cpu.Load(w), 1e-5f, cn);
                var gx = Gpu(x, rows, cols); var gn = GpuPoisoned(rows, cols);
                _gpu.AddRmsNorm(gx, Gpu(y, rows, cols), _gpu.Load(w), 1e-5f, gn);
                Compare("ops", "add_rms_norm (residual)", $"[{rows}, {cols}]", Down(_gpu, gx), Down(_cpu, cx), Tol);
                Compare("ops", "add_rms_norm (normed)", $"[{rows}, {cols}]", Down(_gpu, gn), Down(_cpu, cn), Tol);
                // Against the GPU's own unfused pair: the same bf16 arithmetic in the same order, so exactly equal.
                var ux = Gpu(x, rows, cols); var un = GpuPoisoned(rows, cols);
                _gpu.AddInPlace(ux, Gpu(y, rows, cols)); _gpu.RmsNorm(ux, _gpu.Load(w), 1e-5f, un);
                Compare("ops", "add_rms_norm = add + rms_norm", $"[{rows}, {cols}] (cuda vs cuda)", Down(_gpu, gn), Down(_gpu, un), 0);
            }

            int li = 0;
            foreach (var (m, n, k) in new[] { (1, 64, 96), (7, 256, 512), (333, 1000, 1024), (64, 4096, 4096), (1, 4096, 4096) })
                foreach (bool bias in new[] { false, true })
                {
                    var dt = (li++ % 3) switch { 0 => DType.BF16, 1 => DType.F16, _ => DType.F32 };
                    var x = Rand((long)m * k);
                    var wv = Weight("w", Rand((long)n * k, 1f / MathF.Sqrt(k)), [n, k], dt);
                    var bv = bias ? Weight("b", Rand(n), [n], dt) : (WeightView?)null;
                    var co = _cpu.Allocate(m, n);
                    _cpu.Linear(Cpu(x, m, k), _cpu.Load(wv), bv is { } b1 ? _cpu.Load(b1) : null, co);
                    var go = GpuPoisoned(m, n);
                    _gpu.Linear(Gpu(x, m, k), _gpu.Load(wv), bv is { } b2 ? _gpu.Load(b2) : null, go);
                    Compare("ops", "linear", $"M={m} N={n} K={k}{(bias ? " +bias" : "")} W {DTypes.Name(dt)}", Down(_gpu, go), Down(_cpu, co), Tol, "cuBLASLt");
                }

            {
                int rows = 17, cols = 1000;
                var x = Rand((long)rows * cols); var y = Rand((long)rows * cols);
                var cx = Cpu(x, rows, cols); _cpu.AddInPlace(cx, Cpu(y, rows, cols));
                var gx = Gpu(x, rows, cols); _gpu.AddInPlace(gx, Gpu(y, rows, cols));
                Compare("ops", "add_in_place", $"[{rows}, {cols}]", Down(_gpu, gx), Down(_cpu, cx), Tol);

                var gate = Rand((long)rows * cols, 3f); var up = Rand((long)rows * cols);
                var co = _cpu.Allocate(rows, cols); _cpu.SiluMul(Cpu(gate, rows, cols), Cpu(up, rows, cols), co);
                var want = Down(_cpu, co);
                var go = GpuPoisoned(rows, cols); _gpu.SiluMul(Gpu(gate, rows, cols), Gpu(up, rows, cols), go);
                Compare("ops", "silu_mul", $"[{rows}, {cols}]", Down(_gpu, go), want, Tol);
                var gg = Gpu(gate, rows, cols); _gpu.SiluMul(gg, Gpu(up, rows, cols), gg);
                Compare("ops", "silu_mul (out = gate)", $"[{rows}, {cols}]", Down(_gpu, gg), want, Tol);

                var cs = Cpu(gate, rows, cols); _cpu.Silu(cs);
                var gs = Gpu(gate, rows, cols); _gpu.Silu(gs);
                Compare("ops", "silu", $"[{rows}, {cols}]", Down(_gpu, gs), Down(_cpu, cs), Tol);
            }

            foreach (var (heads, d, theta, far) in new[] { (8, 64, 500000.0, false), (8, 128, 500000.0, true), (6, 16, 10000.0, true), (32, 128, 500000.0, true) })
            {
                int T = 29;
                var table = new RopeTable(new RopeConfig(RopeType.Default, theta), d);
                var positions = Enumerable.Range(0, T).Select(i => far ? _rng.Next(131072) : i + 3).ToArray();
                var x = Rand((long)T * heads * d);
                var cx = Cpu(x, T, heads * d); _cpu.Rope(cx, heads, positions, table);
                var gx = Gpu(x, T, heads * d); _gpu.Rope(gx, heads, positions, table);
                Compare("ops", "rope", $"{heads} heads x d={d}, positions {(far ? "< 128K random" : "3..31")}", Down(_gpu, gx), Down(_cpu, cx), Tol);
            }

            foreach (var dt in new[] { CudaDType.BF16, CudaDType.F32 })
            {
                var s = Rand(20 * 300); var d0 = Rand(30 * 500);
                var cd = Cpu(d0, 30, 500); _cpu.Copy(Cpu(s, 20, 300), 3, 7, cd, 5, 11, 10, 200);
                var gd = Gpu(d0, 30, 500, dt); _gpu.Copy(Gpu(s, 20, 300, dt), 3, 7, gd, 5, 11, 10, 200);
                Compare("ops", "copy (window)", $"[10, 200] of [20, 300] into [30, 500] {dt}", Down(_gpu, gd), Down(_cpu, cd), 0);
                var w0 = Rand(40 * 64);
                var cw = Cpu(w0, 40, 64); _cpu.Copy(Cpu(s.AsSpan(0, 20 * 64).ToArray(), 20, 64), 2, 0, cw, 9, 0, 17, 64);
                var gw = Gpu(w0, 40, 64, dt); _gpu.Copy(Gpu(s.AsSpan(0, 20 * 64).ToArray(), 20, 64, dt), 2, 0, gw, 9, 0, 17, 64);
                Compare("ops", "copy (rows)", $"17 rows of [20, 64] into [40, 64] {dt}", Down(_gpu, gw), Down(_cpu, cw), 0);
            }

            foreach (var (T, heads, d) in new[] { (37, 8, 64), (5, 32, 128), (11, 6, 16) })
            {
                var acc = Rand((long)T * heads * d); var part = Rand((long)T * heads * d);
                var la = Rand((long)T * heads, 3f); var lp = Rand((long)T * heads, 3f);
                // Rows that have seen nothing yet (-inf) on either side, and on both.
                for (int i = 0; i < T * heads; i += 7) la[i] = float.NegativeInfinity;
                for (int i = 3; i < T * heads; i += 11) lp[i] = float.NegativeInfinity;
                var ca = Cpu(acc, T, heads * d); var cl = Cpu(la, T, heads);
                _cpu.MergeAttention(ca, cl, Cpu(part, T, heads * d), Cpu(lp, T, heads), heads);
                var ga = Gpu(acc, T, heads * d); var gl = Gpu(la, T, heads, CudaDType.F32);
                _gpu.MergeAttention(ga, gl, Gpu(part, T, heads * d), Gpu(lp, T, heads, CudaDType.F32), heads);
                Compare("ops", "merge_attention (out)", $"T={T} {heads}x{d}", Down(_gpu, ga), Down(_cpu, ca), Tol);
                CompareLse("ops", "merge_attention (lse)", $"T={T} {heads}x{d}", Down(_gpu, gl), Down(_cpu, cl), 1e-5, "");
            }
            ApbChecks();
            _gpu.Synchronize();
        }

        /// <summary>APB's scoring and selection ops: head_dot, group_mean, gather_head_rows, select_passing (max-pool + top-k per head).</summary>
        // The CPU backend's passing ops are the reference.
        IPassingOps Ref => _cpu.Passing;

        void ApbChecks()
        {
            // head_dot: fp32 scores of bf16 keys against qbar (bf16 as the strategy keeps it, and fp32), on a row slice.
            foreach (var (rows, heads, d, vecF32) in new[] { (37, 4, 64, false), (1000, 8, 128, false), (4099, 8, 128, true), (9, 3, 16, true) })
            {
                var x = Rand((long)(rows + 3) * heads * d); var vec = Rand((long)heads * d);
                var co = _cpu.Allocate(rows, heads);
                Ref.HeadDot(Cpu(x, rows + 3, heads * d).RowSlice(3, rows), Cpu(vec, 1, heads * d), heads, co);
                var go = GpuPoisoned(rows, heads, CudaDType.F32);
                _gpu.Passing.HeadDot(Gpu(x, rows + 3, heads * d).RowSlice(3, rows), Gpu(vec, 1, heads * d, vecF32 ? CudaDType.F32 : CudaDType.BF16), heads, go);
                Compare("ops", "head_dot", $"[{rows}, {heads}x{d}] vec {(vecF32 ? "f32" : "bf16")}", Down(_gpu, go), Down(_cpu, co), 1e-5);
            }

            // group_mean (APB's qbar): query rows from the middle of a tensor, group sizes 1, 3 and 4, fp32 and bf16 out.
            foreach (var (rows, heads, groups, d, outF32) in new[] { (64, 32, 8, 128, true), (1, 4, 4, 64, true), (7, 6, 2, 16, false), (333, 32, 8, 128, false) })
            {
                var x = Rand((long)(rows + 5) * heads * d);
                var co = _cpu.Allocate(1, groups * d);
                Ref.GroupMean(Cpu(x, rows + 5, heads * d).RowSlice(2, rows), heads, groups, co);
                var go = GpuPoisoned(1, groups * d, outF32 ? CudaDType.F32 : CudaDType.BF16);
                _gpu.Passing.GroupMean(Gpu(x, rows + 5, heads * d).RowSlice(2, rows), heads, groups, go);
                Compare("ops", "group_mean", $"{rows} rows, {heads} heads in {groups} groups x d={d} {(outF32 ? "f32" : "bf16")}",
                    Down(_gpu, go), Down(_cpu, co), outF32 ? 1e-5 : 1e-2);
            }

            // gather_head_rows: rows picked separately per head, both element types; exact.
            foreach (var dt in new[] { CudaDType.BF16, CudaDType.F32 })
                foreach (var (srcRows, picked, heads, d) in new[] { (60, 17, 8, 64), (4096, 1024, 8, 128), (9, 9, 3, 16) })
                {
                    var src = Rand((long)srcRows * heads * d);
                    var idx = Enumerable.Range(0, picked * heads).Select(_ => _rng.Next(srcRows)).ToArray();
                    using var ci = Ref.AllocateRows(picked, heads); Ref.Upload(idx, ci);
                    using var gi = _gpu.Passing.AllocateRows(picked, heads); _gpu.Passing.Upload(idx, gi);
                    var cg = _cpu.Allocate(picked, heads * d); Ref.GatherHeadRows(Cpu(src, srcRows, heads * d), heads, ci, cg);
                    var gg = GpuPoisoned(picked, heads * d, dt); _gpu.Passing.GatherHeadRows(Gpu(src, srcRows, heads * d, dt), heads, gi, gg);
                    Compare("ops", "gather_head_rows", $"{picked} of [{srcRows}, {heads}x{d}] {dt}", Down(_gpu, gg), Down(_cpu, cg), 0);
                }

            // select_passing: the same scores on both sides, so the picked rows must match exactly, ties included (the
            // max-pool makes runs of equal values; "coarse" scores add many more). The GPU's index scratch is poisoned
            // (-1) before every selection.
            foreach (var (rows, heads, count, coarse, f32) in new[] { (1000, 8, 100, false, true), (65536, 8, 2048, false, true),
                         (65536, 8, 1024, true, false), (300, 3, 300, false, true), (50, 2, 1, true, true), (7, 8, 5, true, false) })
            {
                var sc = Rand((long)rows * heads, 3f);
                if (coarse) for (int i = 0; i < sc.Length; i++) sc[i] = MathF.Round(sc[i] * 2) / 2;
                using var ci = Ref.AllocateRows(count, heads); using var gi = _gpu.Passing.AllocateRows(count, heads);
                Ref.SelectPassing(Cpu(sc, rows, heads), heads, ci);
                _gpu.Passing.SelectPassing(Gpu(sc, rows, heads, f32 ? CudaDType.F32 : CudaDType.BF16), heads, gi);
                var want = new int[count * heads]; Ref.Download(ci, want);
                var got = new int[count * heads]; _gpu.Passing.Download(gi, got);
                Compare("ops", "select_passing", $"{count} of {rows} rows x {heads} heads{(coarse ? " (coarse: ties)" : "")} {(f32 ? "f32" : "bf16")}",
                    got.Select(i => (float)i).ToArray(), want.Select(i => (float)i).ToArray(), 0);
            }
        }

        /// <summary>LSE: the -inf pattern must match exactly; finite values by max absolute error.</summary>
        void CompareLse(string group, string op, string shape, float[] got, float[] want, double limit, string kernel)
        {
            double err = 0;
            int bad = 0;
            for (int i = 0; i < got.Length; i++)
            {
                if (float.IsNaN(got[i]) || float.IsNegativeInfinity(got[i]) != float.IsNegativeInfinity(want[i])) { bad++; continue; }
                if (!float.IsNegativeInfinity(want[i])) err = Math.Max(err, Math.Abs((double)got[i] - want[i]));
            }
            _results.Add(new Result(group, op, shape, kernel, bad > 0 ? double.NaN : err, limit, bad == 0 && err <= limit,
                bad > 0 ? $"{bad} entries NaN or with the wrong -inf pattern" : "max abs error"));
        }

        // ------------------------------------------------------------------------------------------------ attention

        void AttentionChecks()
        {
            var shapes = new[] { (1, 1), (1, 300), (77, 77), (129, 300), (300, 129), (600, 1000), (1000, 1337) };
            var gqa = new[] { (4, 4), (8, 2), (16, 2) };
            foreach (var (tq, tk) in shapes)
                foreach (var (heads, kv) in gqa)
                    foreach (int d in new[] { 16, 32, 64, 128 })
                        foreach (bool causal in new[] { true, false })
                        {
                            // Keep the CPU reference affordable: the largest shape only with the model-like head dim.
                            if (tq * tk > 100_000 && d != 128) continue;
                            CheckAttention(tq, tk, heads, kv, d, causal);
                        }
        }

        /// <summary>
        /// Random non-zero q/k/v of one attention shape, the fp32 CPU reference (output, LSE) and the errors a plain bf16
        /// implementation makes against it: FlashAttention's tolerance rule allows a kernel twice those (+ 1e-3).
        /// </summary>
        (float[] Q, float[] K, float[] V, float[] RefO, float[] RefL, double NaiveErr, double NaiveLse) AttentionReference(
            int tq, int tk, int heads, int kv, int d, bool causal)
        {
            var mask = causal ? AttentionMask.Causal : AttentionMask.None;
            var q = Rand((long)tq * heads * d, 1.5f); var k = Rand((long)tk * kv * d, 1.5f); var v = Rand((long)tk * kv * d);
            var co = _cpu.Allocate(tq, heads * d); var cl = _cpu.Allocate(tq, heads);
            _cpu.Attention(Cpu(q, tq, heads * d), Cpu(k, tk, kv * d), Cpu(v, tk, kv * d), heads, kv, mask, co, cl);
            var refO = Down(_cpu, co); var refL = Down(_cpu, cl);
            var (naiveO, naiveL) = NaiveBf16Attention(q, k, v, tq, tk, heads, kv, d, causal);
            double naiveLse = 0;
            for (int i = 0; i < refL.Length; i++)
                if (!float.IsNegativeInfinity(refL[i])) naiveLse = Math.Max(naiveLse, Math.Abs(naiveL[i] - refL[i]));
            return (q, k, v, refO, refL, RelErr(naiveO, refO), naiveLse);
        }

        void CheckAttention(int tq, int tk, int heads, int kv, int d, bool causal)
        {
            var mask = causal ? AttentionMask.Causal : AttentionMask.None;
            var (q, k, v, refO, refL, naiveErr, naiveLse) = AttentionReference(tq, tk, heads, kv, d, causal);
            string shape = $"Tq={tq} Tk={tk} h={heads}/{kv} d={d} {(causal ? "causal" : "full")}";
            var gq = Gpu(q, tq, heads * d); var gk = Gpu(k, tk, kv * d); var gv = Gpu(v, tk, kv * d);
            var kernels = d is 64 or 128
                ? new[] { AttentionKernel.Generic, AttentionKernel.TensorCore }
                : new[] { AttentionKernel.Generic };
            if (d is 64 or 128 && _gpu.HopperAttentionAvailable) kernels = [.. kernels, AttentionKernel.Hopper];
            foreach (var kernel in kernels)
            {
                var go = GpuPoisoned(tq, heads * d); var gl = GpuPoisoned(tq, heads, CudaDType.F32);
                _gpu.Attention(gq, gk, gv, heads, kv, mask, go, gl, kernel);
                string kname = AttentionKernels.Name(kernel);
                Compare("attention", "attention (out)", shape, Down(_gpu, go), refO, 2 * naiveErr + 1e-3, kname);
                CompareLse("attention", "attention (lse)", shape, Down(_gpu, gl), refL, 2 * naiveLse + 1e-3, kname);
                ((CudaTensor)go).Dispose(); ((CudaTensor)gl).Dispose();
            }
            ((CudaTensor)gq).Dispose(); ((CudaTensor)gk).Dispose(); ((CudaTensor)gv).Dispose();
        }

        static float B(float f) => DTypes.BF16ToFloat(DTypes.FloatToBF16(f));

        /// <summary>
        /// What a plain bf16 implementation computes (FlashAttention's attention_ref without upcast): q pre-scaled and
        /// rounded, scores rounded to bf16, softmax in fp32 rounded to bf16, P V accumulated in fp32 and rounded.
        /// </summary>
        static (float[] O, float[] Lse) NaiveBf16Attention(float[] q, float[] k, float[] v, int tq, int tk, int heads, int kv, int d, bool causal)
        {
            var o = new float[(long)tq * heads * d];
            var lse = new float[(long)tq * heads];
            float scale = 1f / MathF.Sqrt(d);
            int group = heads / kv;
            Parallel.For(0, tq * heads, task =>
            {
                int i = task / heads, h = task % heads, kh = h / group;
                int visible = causal ? Math.Clamp(i + tk - tq + 1, 0, tk) : tk;
                var oi = o.AsSpan((i * heads + h) * d, d);
                if (visible == 0) { oi.Clear(); lse[i * heads + h] = float.NegativeInfinity; return; }
                var qi = new float[d];
                for (int c = 0; c < d; c++) qi[c] = B(q[(long)(i * heads + h) * d + c] * scale);
                var s = new float[visible];
                float max = float.NegativeInfinity;
                for (int j = 0; j < visible; j++)
                {
                    s[j] = B(System.Numerics.Tensors.TensorPrimitives.Dot(qi, k.AsSpan((j * kv + kh) * d, d)));
                    max = Math.Max(max, s[j]);
                }
                double sum = 0;
                for (int j = 0; j < visible; j++) sum += Math.Exp(s[j] - max);
                lse[i * heads + h] = (float)(max + Math.Log(sum));
                var acc = new float[d];
                for (int j = 0; j < visible; j++)
                {
                    float p = B((float)(Math.Exp(s[j] - max) / sum));
                    System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(v.AsSpan((j * kv + kh) * d, d), p, acc, acc);
                }
                for (int c = 0; c < d; c++) oi[c] = B(acc[c]);
            });
            return (o, lse);
        }

        // ------------------------------------------------------------------------------------------------ models

        static IEnumerable<string> DefaultModels()
        {
            for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir != null; dir = dir.Parent)
            {
                string fixtures = Path.Combine(dir.FullName, "tests", "fixtures", "models");
                if (!Directory.Exists(fixtures)) continue;
                foreach (var m in Directory.GetDirectories(fixtures).OrderBy(s => s, StringComparer.Ordinal))
                    if (File.Exists(Path.Combine(m, "config.json"))) yield return m;
                yield break;
            }
        }

        /// <summary>The prompt and greedy length from reference.json beside the model, else a fixed prompt.</summary>
        static (int[] Prompt, int Greedy) Reference(string dir, int vocab)
        {
            var candidates = new[] { Path.Combine(dir, "reference.json") };
            foreach (var path in candidates)
            {
                if (!File.Exists(path)) continue;
                using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
                var r = doc.RootElement;
                var prompt = r.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
                int greedy = r.TryGetProperty("greedy_ids", out var g) ? g.GetArrayLength() : 8;
                if (prompt.All(t => t < vocab)) return (prompt, greedy);
            }
            return (Enumerable.Range(1, Math.Min(48, vocab - 1)).ToArray(), 8);
        }

        void ModelChecks(string? models)
        {
            var dirs = models != null ? models.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : DefaultModels().ToArray();
            if (dirs.Length == 0) _io.Err.WriteLine("  models: none found (run from the repository, or pass --models)");
            foreach (var dir in dirs)
            {
                string name = Path.GetFileName(Path.GetFullPath(dir).TrimEnd('/'));
                var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
                using var ckpt = CheckpointWeights.Open(dir);
                var (prompt, greedy) = Reference(dir, config.VocabSize);
                var cpuModel = LlamaModel.Load(config, ckpt, _cpu);
                var gpuModel = LlamaModel.Load(config, ckpt, _gpu);
                float[] want, got;
                using (var s = new LocalSession(cpuModel, prompt.Length)) want = s.AllLogits(prompt);
                using (var s = new LocalSession(gpuModel, prompt.Length)) got = s.AllLogits(prompt);
                string shape = $"{prompt.Length} tokens, {config.NumHiddenLayers} layers, d={config.HeadDim}, h={config.NumAttentionHeads}/{config.NumKeyValueHeads}";
                Compare("models", $"logits {name}", shape, got, want, 5e-2, AttentionKernels.Name(_gpu.AttentionKernel));
                var (a, margins) = Greedy(cpuModel, prompt, greedy); var (b, _) = Greedy(gpuModel, prompt, greedy);
                int same = 0;
                while (same < a.Count && a[same] == b[same]) same++;
                // Informational: a near-tie in a tiny random model may flip a token under bf16; logits carry the verdict.
                // The CPU's top-1 minus top-2 logit where they part says whether it was a near-tie.
                _results.Add(new Result("models", $"greedy {name}", $"{greedy} tokens", "", same, greedy, true,
                    same == greedy ? "identical continuation"
                        : $"first {same} of {greedy} tokens agree; at token {same} the CPU's top-2 logit gap is {margins[same]:F4} " +
                          $"(cpu {string.Join(',', a)} / cuda {string.Join(',', b)})"));
                SessionMemoryCheck(name, gpuModel, prompt);
            }
        }

        /// <summary>
        /// A server runs session after session on one loaded model: each one's KV cache must go back to the memory pool
        /// when it is disposed, or device memory leaks a cache per request. One session first (the model's own scratch
        /// buffers for these shapes stay with the model), then three more; bytes in use after each against before them.
        /// </summary>
        void SessionMemoryCheck(string name, LlamaModel model, int[] prompt)
        {
            long before = 0, worst = 0;
            for (int i = 0; i < 4; i++)
            {
                if (i == 1) { _gpu.Synchronize(); before = _gpu.Pool.BytesInUse; }
                using (var s = new LocalSession(model, prompt.Length + 4))
                {
                    s.Prefill(prompt, Array.Empty<int>());
                    s.Decode(prompt[0]);
                }
                _gpu.Synchronize();
                if (i >= 1) worst = Math.Max(worst, _gpu.Pool.BytesInUse - before);
            }
            _results.Add(new Result("models", $"session memory {name}", "3 sessions, prefill + 1 decode each", "", worst, 0, worst == 0,
                worst == 0 ? "every session's cache returned to the pool" : $"{worst} bytes still in use after the sessions were disposed"));
        }

        static (List<int> Tokens, List<float> Margins) Greedy(LlamaModel m, int[] prompt, int n)
        {
            using var s = new LocalSession(m, prompt.Length + n);
            var logits = s.Prefill(prompt, Array.Empty<int>());
            var got = new List<int>();
            var margins = new List<float>();
            for (int i = 0; i < n; i++)
            {
                int next = Sampler.ArgMax(logits);
                float second = float.NegativeInfinity;
                for (int j = 0; j < logits.Length; j++) if (j != next) second = Math.Max(second, logits[j]);
                got.Add(next);
                margins.Add(logits[next] - second);
                if (i + 1 < n) logits = s.Decode(next);
            }
            return (got, margins);
        }

        // ------------------------------------------------------------------------------------------------ bench

        void Bench(int[] lengths)
        {
            const int heads = 32, kv = 8, d = 128;
            foreach (int n in lengths)
            {
                var q = _gpu.Allocate(n, heads * d, CudaDType.BF16); var k = _gpu.Allocate(n, kv * d, CudaDType.BF16); var v = _gpu.Allocate(n, kv * d, CudaDType.BF16);
                var o = _gpu.Allocate(n, heads * d, CudaDType.BF16); var l = _gpu.AllocateF32(n, heads);
                RandomFill.Fill(q, 7, 1, 1f); RandomFill.Fill(k, 7, 2, 1f); RandomFill.Fill(v, 7, 3, 1f);
                // FlashAttention's convention: causal FLOPs = 4 N^2 d heads / 2.
                double flops = 4.0 * n * (double)n * d * heads / 2;
                var kernels = new[] { AttentionKernel.TensorCore, AttentionKernel.Generic };
                if (_gpu.HopperAttentionAvailable) kernels = [AttentionKernel.Hopper, .. kernels];
                foreach (var kernel in kernels)
                {
                    if (kernel == AttentionKernel.Generic && n > 16384) continue; // minutes at 64K: not worth the lease
                    int repeats = kernel == AttentionKernel.Generic ? 3 : n >= 65536 ? 5 : 20;
                    var (med, min) = GpuTiming.MedianMs(_gpu, () => _gpu.Attention(q, k, v, heads, kv, AttentionMask.Causal, o, l, kernel), repeats);
                    _timings.Add(new Timing($"attention {AttentionKernels.Name(kernel)}",
                        $"N={n} h={heads}/{kv} d={d} causal", med, min, flops / (med * 1e-3) / 1e12, repeats));
                    _io.Err.WriteLine($"  bench {_timings[^1].Name} N={n}: {med:F3} ms median, {_timings[^1].Tflops:F1} TFLOP/s");
                }
                q.Dispose(); k.Dispose(); v.Dispose(); o.Dispose(); l.Dispose();
            }
            {
                // The GEMM ceiling through our cuBLASLt path: what `apb bench prefill --peak-tflops` and the prefill floor assume.
                int m = 8192;
                var x = _gpu.Allocate(m, m, CudaDType.BF16); var y = _gpu.Allocate(m, m, CudaDType.BF16);
                RandomFill.Fill(x, 7, 4, 1f);
                var w = _gpu.LoadRandom("gemm", m, m, RandomValues.Key(7, 5), 0.01f, 0f);
                var (med, min) = GpuTiming.MedianMs(_gpu, () => _gpu.Linear(x, w, null, y), 10);
                _timings.Add(new Timing("gemm cuBLASLt bf16", $"{m}^3", med, min, 2.0 * m * m * (double)m / (med * 1e-3) / 1e12, 10));
                x.Dispose(); y.Dispose();
            }
        }

        // ------------------------------------------------------------------------------------------------ report

        void Print()
        {
            var o = _io.Out;
            o.WriteLine();
            o.WriteLine($"{"group",-9} {"op",-26} {"shape",-44} {"kernel",-9} {"error",10} {"limit",10}  result");
            foreach (var r in _results)
                o.WriteLine($"{r.Group,-9} {Trunc(r.Op, 26),-26} {Trunc(r.Shape, 44),-44} {r.Kernel,-9} {Num(r.Error),10} {Num(r.Limit),10}  {(r.Pass ? "ok" : "FAIL")} {r.Note}");
            if (_timings.Count > 0)
            {
                o.WriteLine();
                o.WriteLine($"{"timing",-22} {"shape",-32} {"median ms",10} {"min ms",10} {"TFLOP/s",8} {"GB/s",8}");
                foreach (var t in _timings)
                    o.WriteLine($"{t.Name,-22} {t.Shape,-32} {t.MedianMs,10:F3} {t.MinMs,10:F3} {t.Tflops,8:F1} {(t.GBps > 0 ? t.GBps.ToString("F0") : "-"),8}");
            }
        }

        static string Trunc(string s, int n) => s.Length <= n ? s : s[..(n - 1)] + "…";
        static string Num(double d) => double.IsNaN(d) ? "NaN" : d == 0 ? "0" : d.ToString("E2");

        void WriteJson(string path, double seconds)
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(path));
            if (dir != null) Directory.CreateDirectory(dir);
            using var fs = File.Create(path);
            using var w = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
            var dev = _gpu.Context.Device;
            w.WriteStartObject();
            w.WriteString("device", dev.Name);
            w.WriteString("compute_capability", dev.ComputeCapability);
            w.WriteString("arch", _gpu.Context.Arch);
            w.WriteNumber("seed", _seed);
            w.WriteNumber("seconds", seconds);
            w.WriteNumber("passed", _results.Count(r => r.Pass));
            w.WriteNumber("failed", _results.Count(r => !r.Pass));
            w.WriteStartArray("checks");
            foreach (var r in _results)
            {
                w.WriteStartObject();
                w.WriteString("group", r.Group); w.WriteString("op", r.Op); w.WriteString("shape", r.Shape); w.WriteString("kernel", r.Kernel);
                if (double.IsFinite(r.Error)) w.WriteNumber("error", r.Error); else w.WriteNull("error");
                w.WriteNumber("limit", r.Limit); w.WriteBoolean("pass", r.Pass); w.WriteString("note", r.Note);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("timings");
            foreach (var t in _timings)
            {
                w.WriteStartObject();
                w.WriteString("name", t.Name); w.WriteString("shape", t.Shape); w.WriteNumber("median_ms", t.MedianMs);
                w.WriteNumber("min_ms", t.MinMs); w.WriteNumber("tflops", t.Tflops); w.WriteNumber("repeats", t.Repeats);
                if (t.GBps > 0) w.WriteNumber("gb_per_s", t.GBps);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }

        public void Dispose()
        {
            _gpu.Dispose();
            foreach (var p in _native) NativeMemory.Free((void*)p);
        }
    }
}
