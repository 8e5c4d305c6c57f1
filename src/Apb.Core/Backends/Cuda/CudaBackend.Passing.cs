using Apb.Backends.Cuda.Native;

namespace Apb.Backends.Cuda;

public sealed unsafe partial class CudaBackend
{
    PassingOps? _passing;

    /// <summary>APB's scoring, selection and gather as kernels of apb.cu; selected rows stay on the device.</summary>
    public IPassingOps Passing => _passing ??= new PassingOps(this);

    sealed class DeviceRows(CudaBackend owner, ulong ptr, int count, int heads) : PassingRows(count, heads)
    {
        public readonly CudaBackend Owner = owner;
        public ulong Ptr { get; private set; } = ptr;
        public long Bytes => (long)Count * Heads * 4;

        public override void Dispose()
        {
            if (Ptr != 0) Owner.Pool.Return(Ptr);
            Ptr = 0;
        }
    }

    sealed class PassingOps(CudaBackend b) : IPassingOps
    {
        ulong _pooled;   // selection scratch: the pooled scores (fp32)
        long _pooledBytes;
        ulong _ascending; // best-first scratch: the selection in ascending order, reordered into the picked rows
        long _ascendingBytes;

        DeviceRows R(PassingRows r) =>
            r is DeviceRows d && d.Owner == b && d.Ptr != 0 ? d : throw new ArgumentException($"{r} does not belong to {b.Name} (or was disposed)");

        /// <summary>Query-aware scores on the device: one warp per (row, head), fp32 accumulation.</summary>
        public void HeadDot(Tensor x, Tensor vec, int heads, Tensor output)
        {
            var xs = Bf16(x, "head_dot"); var vs = C(vec); var o = C(output);
            int d = heads > 0 ? xs.Cols / heads : 0;
            if (heads <= 0 || xs.Cols != heads * d || vs.Rows != 1 || vs.Cols != xs.Cols || o.Rows != xs.Rows || o.Cols != heads)
                throw new ArgumentException($"head_dot: x {xs}, vec {vs}, {heads} heads, out {o}");
            if (xs.Rows == 0) return;
            b.Enter();
            ulong xp = xs.Ptr, vp = vs.Ptr, op = o.Ptr;
            long xStride = xs.Cols;
            int vecF32 = vs.DType == CudaDType.F32 ? 1 : 0, outF32 = o.DType == CudaDType.F32 ? 1 : 0, rows = xs.Rows;
            long pairs = (long)rows * heads;
            void** args = stackalloc void*[] { &xp, &xStride, &vp, &vecF32, &op, &outF32, &rows, &heads, &d };
            b.Context.Launch(b.Context.Function(ApbFile, "apb_head_dot"), "apb_head_dot", ((uint)((pairs + 7) / 8), 1, 1), 256, 0, args);
        }

        /// <summary>[q; k; v] side by side in one launch (apb_concat3).</summary>
        public void ConcatColumns(Tensor a, Tensor bt, Tensor c, Tensor dst)
        {
            var (x, y, z, o) = (Bf16(a, "concat_columns"), Bf16(bt, "concat_columns"), Bf16(c, "concat_columns"), Bf16(dst, "concat_columns"));
            if (o.Cols != x.Cols + y.Cols + z.Cols || x.Rows < o.Rows || y.Rows < o.Rows || z.Rows < o.Rows)
                throw new ArgumentException($"concat_columns: a {x}, b {y}, c {z} into {o}");
            if (o.Rows == 0) return;
            b.Enter();
            ulong xp = x.Ptr, yp = y.Ptr, zp = z.Ptr, op = o.Ptr;
            int xc = x.Cols, yc = y.Cols, zc = z.Cols;
            long rows = o.Rows;
            void** args = stackalloc void*[] { &xp, &xc, &yp, &yc, &zp, &zc, &op, &rows };
            b.Context.Launch(b.Context.Function(ApbFile, "apb_concat3"), "apb_concat3", (GridFor(rows * o.Cols), 1, 1), 256, 0, args);
        }

        /// <summary>silu(h) W^T for a narrow W in one launch (apb_silu_linear_narrow): one block per row.</summary>
        public void SiluLinear(Tensor h, IWeight w, Tensor output)
        {
            var x = Bf16(h, "silu_linear"); var o = Bf16(output, "silu_linear"); var wt = C(w);
            if (wt.Cols != x.Cols || o.Cols != wt.Rows || o.Rows != x.Rows || wt.Rows > IPassingOps.NarrowMax)
                throw new ArgumentException($"silu_linear {wt.Name}: h {x} times W^T [{wt.Cols}, {wt.Rows}] (at most {IPassingOps.NarrowMax} outputs) into {o}");
            if (x.Rows == 0) return;
            b.Enter();
            ulong xp = x.Ptr, wp = wt.Ptr, op = o.Ptr;
            int k = x.Cols, n = wt.Rows;
            void** args = stackalloc void*[] { &xp, &wp, &op, &k, &n };
            b.Context.Launch(b.Context.Function(ApbFile, "apb_silu_linear_narrow"), "apb_silu_linear_narrow", ((uint)x.Rows, 1, 1), 256, 0, args);
        }

        /// <summary>APB's qbar on the device (the query rows averaged per KV-head group): no download, no wait.</summary>
        public void GroupMean(Tensor x, int heads, int groups, Tensor output)
        {
            var xs = Bf16(x, "group_mean"); var o = C(output);
            int d = heads > 0 ? xs.Cols / heads : 0;
            if (heads <= 0 || groups <= 0 || heads % groups != 0 || xs.Cols != heads * d || xs.Rows == 0 || o.Rows != 1 || o.Cols != groups * d)
                throw new ArgumentException($"group_mean: x {xs} with {heads} heads in {groups} groups into {o}");
            b.Enter();
            ulong xp = xs.Ptr, op = o.Ptr;
            long xStride = xs.Cols;
            int outF32 = o.DType == CudaDType.F32 ? 1 : 0, rows = xs.Rows, groupSize = heads / groups, cols = groups * d;
            uint tiles = (uint)((cols + 31) / 32);
            if (rows <= GroupMeanChunk)
            {
                // A few rows (the query's): one pass, each column tile's 8 slices over all of them.
                void** args = stackalloc void*[] { &xp, &xStride, &op, &outF32, &rows, &groups, &groupSize, &d };
                b.Context.Launch(b.Context.Function(ApbFile, "apb_group_mean"), "apb_group_mean", (tiles, 1, 1), 256, 0, args);
                return;
            }
            // A block's keys (the novelty term's mean): the rows cut into chunks so that every SM has blocks to run (one
            // block per column tile was 32 blocks streaming 16K rows each), then the chunks' sums added in order.
            int chunks = Math.Min((rows + GroupMeanChunk - 1) / GroupMeanChunk, 256), rowsPer = (rows + chunks - 1) / chunks;
            chunks = (rows + rowsPer - 1) / rowsPer;
            ulong part = b.Scratch(ref b._groupMeanPart, ref b._groupMeanPartBytes, (long)chunks * cols * 4, 1L << 16, "group mean partial sums");
            void** pa = stackalloc void*[] { &xp, &xStride, &part, &rows, &groups, &groupSize, &d, &rowsPer };
            b.Context.Launch(b.Context.Function(ApbFile, "apb_group_mean_part"), "apb_group_mean_part", (tiles, (uint)chunks, 1), 256, 0, pa);
            float inv = 1f / ((float)rows * groupSize);
            void** fa = stackalloc void*[] { &part, &chunks, &op, &outF32, &cols, &inv };
            b.Context.Launch(b.Context.Function(ApbFile, "apb_group_mean_finish"), "apb_group_mean_finish", ((uint)((cols + 255) / 256), 1, 1), 256, 0, fa);
        }

        const int GroupMeanChunk = 256; // rows per chunk of a long mean

        /// <summary>Two score tensors mixed by their standardized values, one block per head (column): no download.</summary>
        public void CombineStandardized(Tensor a, float weightA, Tensor bT, float weightB, Tensor output)
        {
            var x = C(a); var y = C(bT); var o = C(output);
            if (x.Rows != y.Rows || x.Cols != y.Cols || o.Rows != x.Rows || o.Cols != x.Cols)
                throw new ArgumentException($"combine_standardized: a {x}, b {y} and output {o} must have one shape");
            foreach (var t in new[] { x, y, o })
                if (t.DType != CudaDType.F32) throw new ArgumentException($"combine_standardized: {t} must be fp32");
            if (x.Rows == 0) return;
            b.Enter();
            ulong ap = x.Ptr, bp = y.Ptr, op = o.Ptr;
            int rows = x.Rows, heads = x.Cols;
            void** args = stackalloc void*[] { &ap, &weightA, &bp, &weightB, &op, &rows, &heads };
            // One block per head must walk all its rows three times: 1024 threads (the most; apb_block_sum2 takes 32 warps)
            // keep four times the loads in flight that 256 did.
            b.Context.Launch(b.Context.Function(ApbFile, "apb_combine_standardized"), "apb_combine_standardized", ((uint)heads, 1, 1), 1024, 0, args);
        }

        public PassingRows AllocateRows(int count, int heads)
        {
            if (count < 0 || heads <= 0) throw new ArgumentException($"cannot hold [{count}, {heads}] row indices");
            b.Enter();
            long bytes = Math.Max((long)count * heads * 4, 4);
            return new DeviceRows(b, b.Pool.Rent(bytes, $"[{count}, {heads}] passing row indices"), count, heads);
        }

        /// <summary>
        /// Max-pool and top-k per head on the device (one block per head, radix select); the indices stay there. Best
        /// first: top-k writes its ascending selection to scratch and apb_rank_best_first ranks it into the picked rows.
        /// </summary>
        public void SelectPassing(Tensor scores, int heads, PassingRows picked, bool bestFirst = false)
        {
            var s = C(scores); var p = R(picked);
            int count = p.Count;
            if (heads <= 0 || s.Cols != heads || p.Heads != heads || count > s.Rows)
                throw new ArgumentException($"select_passing: {count} of the rows of {s} for {heads} heads");
            if (count == 0) return;
            b.Enter();
            int rows = s.Rows;
            long n = (long)rows * heads;
            ulong sp = s.Ptr, ip = p.Ptr;
            ulong pp = b.Scratch(ref _pooled, ref _pooledBytes, n * 4, 4096, "APB pooled scores");
            bool rank = bestFirst && count > 1;
            ulong top = rank ? b.Scratch(ref _ascending, ref _ascendingBytes, (long)count * heads * 4, 4096, "APB selection before ranking") : ip;
            // -1 in every index slot first: a slot the kernel failed to write makes the gather write NaN rows.
            Driver.Check(Driver.cuMemsetD32Async(top, 0xffffffffu, (nuint)((long)count * heads), b.Context.Stream), "cuMemsetD32Async(picked rows)");
            int f32 = s.DType == CudaDType.F32 ? 1 : 0;
            void** pa = stackalloc void*[] { &sp, &f32, &pp, &rows, &heads };
            b.Context.Launch(b.Context.Function(ApbFile, "apb_max_pool5"), "apb_max_pool5", (GridFor(n), 1, 1), 256, 0, pa);
            void** ta = stackalloc void*[] { &pp, &rows, &heads, &count, &top };
            b.Context.Launch(b.Context.Function(ApbFile, "apb_topk_rows"), "apb_topk_rows", ((uint)heads, 1, 1), 1024, 0, ta);
            if (!rank) return;
            // Every picked slot is written: the ranks of a head's rows are 0 .. count - 1, each once.
            void** ra = stackalloc void*[] { &pp, &heads, &top, &count, &ip };
            b.Context.Launch(b.Context.Function(ApbFile, "apb_rank_best_first"), "apb_rank_best_first",
                ((uint)((count + 255) / 256), (uint)heads, 1), 256, 0, ra);
        }

        /// <summary>The passing-block gather: one launch for all rows and heads, reading the indices where they are.</summary>
        public void GatherHeadRows(Tensor src, int heads, PassingRows rows, Tensor dst)
        {
            var s = C(src); var d = C(dst); var r = R(rows);
            int hd = heads > 0 ? s.Cols / heads : 0;
            if (heads <= 0 || s.Cols != heads * hd || d.Cols != s.Cols || r.Heads != heads || d.Rows != r.Count || s.DType != d.DType)
                throw new ArgumentException($"gather_head_rows: {r} for {heads} heads of {s} into {d}");
            if (d.Rows == 0) return;
            b.Enter();
            ulong sp = s.Ptr, dp = d.Ptr, ip = r.Ptr;
            int srcRows = s.Rows;
            string fn = s.ElementSize == 2 ? "apb_gather_head_rows_u16" : "apb_gather_head_rows_u32";
            void** args = stackalloc void*[] { &sp, &srcRows, &ip, &dp, &heads, &hd };
            b.Context.Launch(b.Context.Function(ApbFile, fn), fn, ((uint)d.Rows, (uint)heads, 1), (uint)Math.Clamp(hd, 32, 256), 0, args);
        }

        public void Download(PassingRows rows, Span<int> dst)
        {
            var r = R(rows);
            if (dst.Length != r.Count * r.Heads) throw new ArgumentException($"download of {r} into {dst.Length} ints");
            if (dst.Length == 0) return;
            b.Enter();
            fixed (int* p = dst)
                b.CopyToHost(p, r.Ptr, dst.Length * 4L, "cuMemcpyDtoHAsync(row indices)");
            b.Context.Synchronize();
        }

        public void Upload(ReadOnlySpan<int> src, PassingRows rows)
        {
            var r = R(rows);
            if (src.Length != r.Count * r.Heads) throw new ArgumentException($"upload of {src.Length} indices into {r}");
            if (src.Length == 0) return;
            b.Enter();
            // The pageable-source async copy is staged by the driver before it returns, so the span may be reused at once.
            fixed (int* p = src)
                b.CopyToDevice(r.Ptr, p, src.Length * 4L, "cuMemcpyHtoDAsync(row indices)");
        }
    }
}
