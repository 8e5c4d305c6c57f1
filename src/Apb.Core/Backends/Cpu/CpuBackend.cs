using System.Buffers;
using System.Numerics.Tensors;
using Apb.Checkpoints;

namespace Apb.Backends.Cpu;

/// <summary>The fp32 reference backend: readable loops over managed arrays, vectorized and multi-threaded.</summary>
public sealed partial class CpuBackend : IBackend
{
    public string Name => "cpu";
    public IPassingOps Passing { get; } = new CpuPassingOps();

    int[] _positions = new int[256];

    public Tensor Allocate(int rows, int cols) => new CpuTensor(rows, cols);

    /// <summary>
    /// QK8 on the CPU: q and k rounded to the values their e4m3 codes stand for (<see cref="Qk8"/>), then the f32
    /// attention: what the GPU's kernel computes, and the reference it is held to.
    /// </summary>
    public bool AttentionQkFp8 { get; set; } = Qk8.EnvironmentDefault;
    public IWeight Load(WeightView w) => new CpuWeight(w);

    static CpuTensor C(Tensor t) => t as CpuTensor ?? throw new ArgumentException($"{t} does not belong to the CPU backend");
    static CpuWeight C(IWeight w) => w as CpuWeight ?? throw new ArgumentException($"weight {w.Name} does not belong to the CPU backend");

    static void Same(Tensor a, Tensor b, string op)
    {
        if (a.Rows != b.Rows || a.Cols != b.Cols) throw new ArgumentException($"{op}: shapes {a} and {b} differ");
    }

    public void Upload(ReadOnlySpan<float> src, Tensor dst)
    {
        if (src.Length != dst.Rows * dst.Cols) throw new ArgumentException($"upload of {src.Length} floats into {dst}");
        src.CopyTo(C(dst).Span);
    }

    public void Download(Tensor src, Span<float> dst) => C(src).Span.CopyTo(dst);

    public void Copy(Tensor src, int srcRow, int srcCol, Tensor dst, int dstRow, int dstCol, int rows, int cols)
    {
        var s = C(src); var d = C(dst);
        if (srcRow < 0 || srcCol < 0 || srcRow + rows > s.Rows || srcCol + cols > s.Cols ||
            dstRow < 0 || dstCol < 0 || dstRow + rows > d.Rows || dstCol + cols > d.Cols)
            throw new ArgumentException($"copy of [{rows}, {cols}] from {s}@({srcRow},{srcCol}) to {d}@({dstRow},{dstCol}) is out of bounds");
        for (int r = 0; r < rows; r++)
            s.Row(srcRow + r).Slice(srcCol, cols).CopyTo(d.Row(dstRow + r).Slice(dstCol, cols));
    }

    public void Embed(ReadOnlySpan<int> ids, IWeight table, Tensor output)
    {
        var t = C(table); var o = C(output);
        if (o.Rows != ids.Length || o.Cols != t.Cols) throw new ArgumentException($"embed of {ids.Length} ids into {o}");
        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)t.Rows)
                throw new ApbException($"token id {ids[i]} is outside the vocabulary (0..{t.Rows - 1})");
            t.ReadRows(ids[i], o.Row(i));
        }
    }

    public void RmsNorm(Tensor x, IWeight weight, float eps, Tensor output)
    {
        var xs = C(x); var o = C(output); var w = C(weight);
        Same(xs, o, "rms_norm");
        var g = w.Vector;
        Parallel.For(0, xs.Rows, r => NormRow(xs.Row(r), g, eps, o.Row(r)));
    }

    /// <summary>x += y and output = rms_norm(x) * weight, row by row: the same arithmetic as AddInPlace then RmsNorm.</summary>
    public void AddRmsNorm(Tensor x, Tensor y, IWeight weight, float eps, Tensor output)
    {
        var xs = C(x); var ys = C(y); var o = C(output); var w = C(weight);
        Same(xs, ys, "add_rms_norm"); Same(xs, o, "add_rms_norm");
        var g = w.Vector;
        Parallel.For(0, xs.Rows, r =>
        {
            var row = xs.Row(r);
            TensorPrimitives.Add(row, ys.Row(r), row);
            NormRow(row, g, eps, o.Row(r));
        });
    }

    // HF's LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * weight; the mean of squares in double.
    static void NormRow(ReadOnlySpan<float> row, ReadOnlySpan<float> g, float eps, Span<float> dst)
    {
        double ss = 0;
        foreach (float f in row) ss += (double)f * f;
        float inv = (float)(1.0 / Math.Sqrt(ss / row.Length + eps));
        TensorPrimitives.Multiply(row, inv, dst);
        TensorPrimitives.Multiply(dst, g, dst);
    }

    public void Linear(Tensor x, IWeight w, IWeight? bias, Tensor output)
    {
        var xs = C(x); var o = C(output); var wt = C(w);
        if (xs.Cols != wt.Cols || o.Cols != wt.Rows || o.Rows != xs.Rows)
            throw new ArgumentException($"linear {wt.Name}: x {xs} times W^T [{wt.Cols}, {wt.Rows}] into {o}");
        if (xs.Rows == 0) return;
        CpuMatMul.Run(xs, wt, bias is null ? null : C(bias), o);
    }

    public void AddInPlace(Tensor x, Tensor y)
    {
        Same(x, y, "add");
        TensorPrimitives.Add(C(x).Span, C(y).Span, C(x).Span);
    }

    public void SiluMul(Tensor gate, Tensor up, Tensor output)
    {
        Same(gate, up, "silu_mul"); Same(gate, output, "silu_mul");
        var g = C(gate); var u = C(up); var o = C(output);
        Parallel.For(0, g.Rows, r =>
        {
            var gr = g.Row(r); var ur = u.Row(r); var or = o.Row(r);
            for (int i = 0; i < gr.Length; i++) or[i] = gr[i] / (1 + MathF.Exp(-gr[i])) * ur[i];
        });
    }

    public void Silu(Tensor x)
    {
        var s = C(x).Span;
        for (int i = 0; i < s.Length; i++) s[i] = s[i] / (1 + MathF.Exp(-s[i]));
    }

    public void Rope(Tensor x, int heads, ReadOnlySpan<int> positions, RopeTable table)
    {
        var xs = C(x);
        int d = table.HeadDim, half = d / 2;
        if (xs.Cols != heads * d || positions.Length != xs.Rows)
            throw new ArgumentException($"rope on {xs} with {heads} heads of {d} and {positions.Length} positions");
        // A span cannot be captured by the parallel body; the copy goes to a buffer kept across calls.
        if (_positions.Length < positions.Length) _positions = new int[positions.Length];
        positions.CopyTo(_positions);
        var pos = _positions;
        Parallel.For(0, xs.Rows, r =>
        {
            var row = xs.Row(r);
            Span<float> cos = stackalloc float[half], sin = stackalloc float[half];
            for (int i = 0; i < half; i++) (cos[i], sin[i]) = table.At(pos[r], i);
            for (int h = 0; h < heads; h++)
            {
                var v = row.Slice(h * d, d);
                for (int i = 0; i < half; i++)
                {
                    float a = v[i], b = v[i + half];
                    v[i] = a * cos[i] - b * sin[i];
                    v[i + half] = b * cos[i] + a * sin[i];
                }
            }
        });
    }

    public void Attention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, AttentionMask mask, Tensor output, Tensor? lse, int window = 0)
    {
        var qs = C(q); var ks = C(k); var vs = C(v); var o = C(output);
        if (heads % kvHeads != 0 || qs.Cols % heads != 0 || ks.Cols != kvHeads * (qs.Cols / heads) ||
            vs.Rows != ks.Rows || vs.Cols != ks.Cols || o.Rows != qs.Rows || o.Cols != qs.Cols ||
            (lse != null && (lse.Rows != qs.Rows || lse.Cols != heads)))
            throw new ArgumentException($"attention: q {qs} ({heads} heads), k {ks}, v {vs} ({kvHeads} kv heads), out {o}, lse {lse}");
        CheckWindow(mask, window);
        int d = qs.Cols / heads;
        if (!AttentionQkFp8 || !Qk8.Applies(qs.Rows, d, window))
        {
            CpuAttention.Run(qs, ks, vs, heads, kvHeads, mask, o, lse is null ? null : C(lse), CpuAttention.WidestVector, window);
            return;
        }
        // QK8: the rounded copies come from the pool (a prefill makes them once per layer, tens of MB at 16K).
        float[] rq = ArrayPool<float>.Shared.Rent(qs.Rows * qs.Cols), rk = ArrayPool<float>.Shared.Rent(ks.Rows * ks.Cols);
        try
        {
            var q8 = new CpuTensor(rq, 0, qs.Rows, qs.Cols); var k8 = new CpuTensor(rk, 0, ks.Rows, ks.Cols);
            qs.Span.CopyTo(q8.Span); ks.Span.CopyTo(k8.Span);
            Qk8.RoundQueries(q8.Span, d);
            Qk8.RoundKeys(k8.Span, kvHeads, d);
            CpuAttention.Run(q8, k8, vs, heads, kvHeads, mask, o, lse is null ? null : C(lse), CpuAttention.WidestVector, window);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rq); ArrayPool<float>.Shared.Return(rk);
        }
    }

    /// <summary>A sliding window is a causal mask's lower edge: with no mask it has no meaning.</summary>
    internal static void CheckWindow(AttentionMask mask, int window)
    {
        if (window < 0 || (window > 0 && mask != AttentionMask.Causal))
            throw new ArgumentException($"attention: a sliding window must be 0 (none) or positive with a causal mask (got {window} with mask {mask})");
    }

    public void MergeAttention(Tensor acc, Tensor accLse, Tensor part, Tensor partLse, int heads)
    {
        Same(acc, part, "merge"); Same(accLse, partLse, "merge");
        CpuAttention.Merge(C(acc), C(accLse), C(part), C(partLse), heads);
    }

    public void MergeAttentionParts(Tensor parts, Tensor lses, int count, int heads, Tensor output)
    {
        var p = C(parts); var l = C(lses); var o = C(output);
        int t = o.Rows;
        if (count < 1 || p.Rows != count * t || p.Cols != o.Cols || l.Rows != count * t || l.Cols != heads || o.Cols % heads != 0)
            throw new ArgumentException($"merge of {count} parts: parts {p}, lses {l}, {heads} heads into {o}");
        CpuAttention.MergeParts(p, l, count, heads, o);
    }

    public int ActivationBytes => sizeof(float);

    /// <summary>Not tracked: CPU tensors are managed arrays, freed by the GC.</summary>
    public MemoryStats Memory => default;
    public void ResetPeakMemory() { }

    public void Synchronize() { }
    public void Dispose() { }
}
