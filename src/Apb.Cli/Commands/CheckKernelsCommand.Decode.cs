using Apb.Backends;
using Apb.Backends.Cuda;

namespace Apb.Cli.Commands;

// `apb check-kernels`: the split-KV decode attention (Kernels/decode.cu) against the CPU, and its timing under --bench.
static partial class CheckKernelsCommand
{
    sealed partial class Checker
    {
        /// <summary>
        /// Decode attention over Tq = 1..16 query rows, GQA groups 1, 4 and 8, head dims 64 and 128, causal (bottom-right:
        /// with Tq &gt; Tk the first rows see nothing) and full, caches from 1 key to 64K keys. K and V are row slices of
        /// a larger buffer, as a KV cache hands them over. Same tolerance rule as attention: 2x a naive bf16 error.
        /// </summary>
        void DecodeChecks()
        {
            var groups = new[] { (8, 8), (32, 8), (16, 2) };
            foreach (int tq in new[] { 1, 3, 8, 16 })
                foreach (int tk in new[] { 1, 65, 1000, 4097 })
                    foreach (var (heads, kv) in groups)
                        foreach (int d in new[] { 64, 128 })
                            foreach (bool causal in new[] { true, false })
                                CheckDecode(tq, tk, heads, kv, d, causal, lseF32: true);
            // One key tile exactly, bf16 LSE, and the long caches (model shape; GQA 8 with two row groups at Tq = 16).
            CheckDecode(2, 64, 32, 8, 128, causal: true, lseF32: false);
            CheckDecode(1, 65536, 32, 8, 128, causal: true, lseF32: true);
            CheckDecode(8, 65536, 32, 8, 128, causal: true, lseF32: true);
            CheckDecode(16, 20000, 16, 2, 64, causal: true, lseF32: true);
            CheckDecode(5, 65536, 16, 2, 64, causal: false, lseF32: true);
        }

        void CheckDecode(int tq, int tk, int heads, int kv, int d, bool causal, bool lseF32)
        {
            var mask = causal ? AttentionMask.Causal : AttentionMask.None;
            var (q, k, v, refO, refL, naiveErr, naiveLse) = AttentionReference(tq, tk, heads, kv, d, causal);

            // The cache buffer has room past Tk (poisoned: a read past the last key shows up as NaN).
            const int spare = 17;
            var gk = GpuPoisoned(tk + spare, kv * d); var gv = GpuPoisoned(tk + spare, kv * d);
            _gpu.Upload(k, gk.RowSlice(0, tk)); _gpu.Upload(v, gv.RowSlice(0, tk));
            var gq = (CudaTensor)Gpu(q, tq, heads * d);
            var go = (CudaTensor)GpuPoisoned(tq, heads * d);
            var gl = (CudaTensor)GpuPoisoned(tq, heads, lseF32 ? CudaDType.F32 : CudaDType.BF16);
            _gpu.Attention(gq, gk.RowSlice(0, tk), gv.RowSlice(0, tk), heads, kv, mask, go, gl, AttentionKernel.SplitKv);
            string shape = $"Tq={tq} Tk={tk} h={heads}/{kv} d={d} {(causal ? "causal" : "full")}{(lseF32 ? "" : " lse bf16")}";
            Compare("decode", "decode attention (out)", shape, Down(_gpu, go), refO, 2 * naiveErr + 1e-3, "split-kv");
            // A bf16 LSE is rounded to 8 bits of mantissa: |lse| ~ 10 gives steps of 0.06.
            CompareLse("decode", "decode attention (lse)", shape, Down(_gpu, gl), refL, lseF32 ? 2 * naiveLse + 1e-3 : 0.1, "split-kv");
            ((CudaTensor)gk).Dispose(); ((CudaTensor)gv).Dispose(); gq.Dispose(); go.Dispose(); gl.Dispose();
        }

        /// <summary>
        /// One query row (a decode step of the 8B shape: 32 q heads, 8 KV heads, d = 128) against caches of the bench
        /// lengths: the split-KV kernel and the prefill kernel (TensorCore) on the same inputs. GB/s = K + V bytes read /
        /// time: the number to hold against the H200's 4.8 TB/s peak.
        /// </summary>
        void BenchDecode(int[] lengths)
        {
            const int heads = 32, kv = 8, d = 128;
            foreach (int n in lengths)
            {
                using var q = _gpu.Allocate(1, heads * d, CudaDType.BF16);
                using var k = _gpu.Allocate(n, kv * d, CudaDType.BF16); using var v = _gpu.Allocate(n, kv * d, CudaDType.BF16);
                using var o = _gpu.Allocate(1, heads * d, CudaDType.BF16); using var l = _gpu.AllocateF32(1, heads);
                RandomFill.Fill(q, 7, 1, 1f); RandomFill.Fill(k, 7, 2, 1f); RandomFill.Fill(v, 7, 3, 1f);
                double bytes = 2.0 * n * kv * d * 2;
                foreach (var (name, run) in new (string, Action)[]
                         {
                             ("decode split-kv", () => _gpu.Attention(q, k, v, heads, kv, AttentionMask.Causal, o, l, AttentionKernel.SplitKv)),
                             ("decode via mma2", () => _gpu.Attention(q, k, v, heads, kv, AttentionMask.Causal, o, l, AttentionKernel.TensorCore)),
                         })
                {
                    var (med, min) = GpuTiming.MedianMs(_gpu, run, 20);
                    double flops = 4.0 * n * d * heads;
                    _timings.Add(new Timing(name, $"Tq=1 Tk={n} h={heads}/{kv} d={d}", med, min, flops / (med * 1e-3) / 1e12, 20, bytes / (med * 1e-3) / 1e9));
                    _io.Err.WriteLine($"  bench {name} Tk={n}: {med:F3} ms median, {_timings[^1].GBps:F0} GB/s");
                }
            }
        }
    }
}
