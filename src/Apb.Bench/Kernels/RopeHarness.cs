using Apb.Backends;
using Apb.Checkpoints;
using static Apb.Bench.Kernels.KernelBenchContext;

namespace Apb.Bench.Kernels;

/// <summary>
/// Rotary embedding in place (Kernels/elementwise.cu, apb_rope) on the query and key rows of the Llama-3.1-8B shape
/// (32 and 8 heads, d 128, theta 500000): reads and writes each row once, plus the positions (4 B a row, uploaded per call
/// as the model does).
/// </summary>
public sealed class RopeHarness : KernelHarness
{
    const int D = 128;
    static readonly RopeTable Table = new(new RopeConfig(RopeType.Default, 500000), D);

    public override string Name => "rope";
    public override string Summary => $"rope in place on q (32 heads) and k (8 heads), d {D}";
    public override string SizeMeaning => "rows (tokens)";
    public override int[] DefaultSizes => [16384, 131072];

    public override void Check(KernelBenchContext ctx)
    {
        const int rows = 64, heads = 32;
        var x = ctx.HostValues((long)rows * heads * D);
        var positions = Enumerable.Range(0, rows).Select(i => i * 2039 % 131072).ToArray();
        var cx = ctx.OnCpu(x, rows, heads * D); ctx.Cpu.Rope(cx, heads, positions, Table);
        using var gx = ctx.OnGpu(x, rows, heads * D); ctx.Gpu.Rope(gx, heads, positions, Table);
        ctx.Expect($"rope {rows} rows x {heads} heads x d {D}, positions < 128K", Down(ctx.Gpu, gx), Down(ctx.Cpu, cx), 1e-2);
    }

    public override IEnumerable<KernelRow> Time(KernelBenchContext ctx, int rows)
    {
        var gpu = ctx.Gpu;
        var positions = Enumerable.Range(0, rows).ToArray();
        foreach (var (what, heads) in new[] { ("q", 32), ("k", 8) })
        {
            using var x = ctx.DeviceRandom(rows, heads * D);
            var time = ctx.TimeGpu(() => gpu.Rope(x, heads, positions, Table), 20);
            yield return new KernelRow("rope", what, $"[{rows}, {heads} x {D}] bf16", rows, time,
                new Work(Bound.Memory, 2.0 * rows * heads * D * 2 + 4.0 * rows, $"read + write: 2 x {rows} x {heads} x {D} x 2 B + {rows} positions x 4 B"));
        }
    }
}
