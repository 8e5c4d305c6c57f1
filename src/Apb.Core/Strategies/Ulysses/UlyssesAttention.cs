using Apb.Attention;
using Apb.Backends;
using Apb.Checkpoints;
using Apb.Comms;
using Apb.Model;

namespace Apb.Strategies.Ulysses;

/// <summary>
/// DeepSpeed-Ulysses (exact), contiguous layout. An all-to-all turns sequence-sharded q/k/v ([l_b rows, all heads]) into
/// head-sharded ones ([H l_b rows, heads/H]): rank r gets query heads [r n_h/H, (r+1) n_h/H) and the KV heads they read,
/// [r n_kv/H, ...) (GQA groups stay whole because H divides n_kv). Causal attention over the whole padded sequence, then
/// the reverse all-to-all. Send chunk i of an all-to-all is what rank i receives, so packing is a column slice per peer.
/// </summary>
public sealed class UlyssesAttention : SequenceParallelAttention
{
    public UlyssesAttention(IBackend backend, ModelConfig config, RopeTable rope, SequencePlan plan, ICommunicator comm)
        : base(backend, config, rope, plan, comm)
    {
        // StrategyOptions.Validate refused rank counts that do not divide the KV heads before any rank was built.
    }

    public override void Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor output)
    {
        int lb = Plan.BlockLength, n = Plan.PaddedLength, H = Ranks;
        if (q.Rows != lb) throw new ArgumentException($"ulysses: rank {Rank} got {q.Rows} rows, the plan says {lb}");
        Rotate(q, k, Plan.Positions(Rank));
        CacheOwnBlock(layer, k, v, 0);

        int qCols = C.QDim / H, kvCols = C.KvDim / H;
        var qh = ToHeads("q", q, qCols);
        var kh = ToHeads("k", k, kvCols);
        var vh = ToHeads("v", v, kvCols);

        var oh = Buffer("oh", n, qCols);
        using (Measure("attention"))
        {
            B.Attention(qh, kh, vh, Heads / H, KvHeads / H, AttentionMask.Causal, oh, null);
            CountAttention(FullAttention.CausalPairs(n, n) / H); // n_h / H heads of the whole sequence
        }

        // Back: chunk i of oh holds rank i's rows, so oh is already laid out for sending; chunk i received is head group i.
        var back = Buffer("back", n, qCols);
        Comm.AllToAll(oh, back);
        using var _ = Measure("other");
        for (int i = 0; i < H; i++) B.Copy(back, i * lb, 0, output, 0, i * qCols, lb, qCols);
    }

    Tensor ToHeads(string name, Tensor x, int cols)
    {
        int lb = Plan.BlockLength, H = Ranks;
        var send = Buffer(name + ".send", H * lb, cols);
        var recv = Buffer(name + ".recv", H * lb, cols);
        using (Measure("other"))
            for (int p = 0; p < H; p++) B.Copy(x, 0, p * cols, send, p * lb, 0, lb, cols);
        Comm.AllToAll(send, recv);
        return recv;
    }
}
