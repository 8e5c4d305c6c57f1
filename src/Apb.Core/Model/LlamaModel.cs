using Apb.Backends;
using Apb.Checkpoints;
using Apb.Diagnostics;

namespace Apb.Model;

/// <summary>Which rows get logits: none (a prefill whose output nobody reads), the last row, or every row.</summary>
public enum LogitsFor { None, Last, All }

/// <summary>
/// The Llama-family decoder, written once in the checkpoint's vocabulary:
///   x = embed(ids);  per layer: x += o_proj(attn(q, k, v of rms_norm(x)));  x += down(silu(gate(h)) * up(h)), h = rms_norm(x)
///   logits = lm_head(norm(x)).
/// Qwen3 adds q_norm / k_norm: an RMSNorm of each head's q and k over head_dim, before the strategy applies RoPE (a step
/// that exists when the checkpoint has those weights). Mistral's sliding window is a rule of attention, not of the model.
/// Each residual add is fused with the RMSNorm that reads its sum (<see cref="IBackend.AddRmsNorm"/>).
/// Attention is one call into an <see cref="IAttention"/>: the model knows nothing of ranks, positions or caches.
/// Per-call buffers are allocated once per distinct token count and reused across layers and steps.
/// </summary>
public sealed class LlamaModel : IDisposable
{
    public ModelConfig Config { get; }
    public IBackend Backend { get; }
    public LlamaWeights Weights { get; }
    public RopeTable Rope { get; }

    Workspace? _ws;

    public LlamaModel(ModelConfig config, LlamaWeights weights, IBackend backend)
    {
        Config = config; Weights = weights; Backend = backend;
        Rope = new RopeTable(config.Rope, config.HeadDim);
    }

    public static LlamaModel Load(ModelConfig config, CheckpointWeights checkpoint, IBackend backend) =>
        new(config, LlamaWeights.Load(config, checkpoint, backend), backend);

    /// <summary>
    /// The activations of one step of T tokens, kept while steps keep that T (a decode loop) and given back when T
    /// changes: a device backend's pool only reuses disposed memory, and a dropped prefill workspace is gigabytes.
    /// </summary>
    sealed class Workspace(IBackend b, ModelConfig c, int t) : IDisposable
    {
        public readonly int T = t;
        public readonly Tensor X = b.Allocate(t, c.HiddenSize), H = b.Allocate(t, c.HiddenSize), Tmp = b.Allocate(t, c.HiddenSize);
        public readonly Tensor Q = b.Allocate(t, c.QDim), K = b.Allocate(t, c.KvDim), V = b.Allocate(t, c.KvDim);
        public readonly Tensor Attn = b.Allocate(t, c.QDim);
        public readonly Tensor Gate = b.Allocate(t, c.IntermediateSize), Up = b.Allocate(t, c.IntermediateSize);

        // Work already queued on the stream that reads these is ordered before any reuse of their memory.
        public void Dispose()
        {
            foreach (var x in new[] { X, H, Tmp, Q, K, V, Attn, Gate, Up }) x.Dispose();
        }
    }

    Workspace WorkspaceFor(int t)
    {
        if (_ws is { } w && w.T == t) return w;
        _ws?.Dispose();
        _ws = null; // a failed allocation below must not leave a disposed workspace in place
        return _ws = new Workspace(Backend, Config, t);
    }

    /// <summary>Gives back the activation workspace (not the weights: whoever loaded them owns them).</summary>
    public void Dispose()
    {
        _ws?.Dispose();
        _ws = null;
    }

    /// <summary>Where time goes, by phase; null (the default) measures nothing.</summary>
    public Profile? Profile { get; set; }

    Profile.Scope? Measure(string phase) => Profile?.Measure(phase);


    /// <summary>
    /// Runs the tokens of one step through every layer. Returns logits [1 or T, vocab] (a fresh tensor) or null.
    /// <paramref name="afterLayer"/>, when given, is called after each layer but the last with the count of layers done
    /// (a recorded decode step launches what it has there: IStepGraphs.Boundary).
    /// </summary>
    public Tensor? Forward(ReadOnlySpan<int> ids, IAttention attention, LogitsFor logitsFor, Action<int>? afterLayer = null)
    {
        var c = Config; var b = Backend;
        int T = ids.Length;
        if (T == 0) throw new ArgumentException("forward of zero tokens");
        var ws = WorkspaceFor(T);
        float eps = (float)c.RmsNormEps;

        // q or k seen as [T x heads, head_dim]: the row-wise norm, in place, is then one per head.
        void HeadNorm(Tensor heads, IWeight weight) => b.RmsNorm(heads, weight, eps, heads);

        using (Measure("other")) b.Embed(ids, Weights.EmbedTokens, ws.X);
        using (Measure("qkv")) b.RmsNorm(ws.X, Weights.Layers[0].InputLayernorm, eps, ws.H);
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            using var layer = Profile?.Layer(); // host<->device copies inside the layer (--timings)
            var L = Weights.Layers[l];
            // ws.H holds input_layernorm(x) here: each residual add below is fused with the norm that reads its sum.
            using (Measure("qkv"))
            {
                b.Linears(ws.H, [new(L.QProj, L.QBias, ws.Q), new(L.KProj, L.KBias, ws.K), new(L.VProj, L.VBias, ws.V)]);
                if (L.QNorm is { } qNorm) HeadNorm(ws.Q.View(T * c.NumAttentionHeads, c.HeadDim), qNorm);
                if (L.KNorm is { } kNorm) HeadNorm(ws.K.View(T * c.NumKeyValueHeads, c.HeadDim), kNorm);
            }
            attention.Attend(l, ws.Q, ws.K, ws.V, ws.Attn);
            bool lastLayer = l + 1 == c.NumHiddenLayers;
            // After the last attention only the logits read anything: none of it without logits (the caches are
            // written), the last row of it for LogitsFor.Last.
            if (lastLayer && logitsFor == LogitsFor.None) return null;
            bool lastRow = lastLayer && logitsFor == LogitsFor.Last && T > 1;
            Tensor Rows(Tensor t) => lastRow ? t.RowSlice(T - 1, 1) : t;
            Tensor x = Rows(ws.X), h = Rows(ws.H), tmp = Rows(ws.Tmp), gate = Rows(ws.Gate), up = Rows(ws.Up);
            using (Measure("o_proj"))
            {
                b.Linear(Rows(ws.Attn), L.OProj, L.OBias, tmp);
                b.AddRmsNorm(x, tmp, L.PostAttentionLayernorm, eps, h);
            }
            using (Measure("ffn"))
            {
                b.GatedLinear(h, L.GateProj, L.GateBias, L.UpProj, L.UpBias, up, gate);
                b.Linear(gate, L.DownProj, L.DownBias, tmp);
                // The last layer's sum goes to the final norm below: a plain add there.
                if (!lastLayer) b.AddRmsNorm(x, tmp, Weights.Layers[l + 1].InputLayernorm, eps, h);
                else b.AddInPlace(x, tmp);
            }
            if (!lastLayer) afterLayer?.Invoke(l + 1);
        }

        using var _ = Measure("other");
        var rows = logitsFor == LogitsFor.Last ? ws.X.RowSlice(T - 1, 1) : ws.X;
        var normed = logitsFor == LogitsFor.Last ? ws.H.RowSlice(T - 1, 1) : ws.H;
        b.RmsNorm(rows, Weights.Norm, eps, normed);
        var logits = b.Allocate(rows.Rows, c.VocabSize);
        b.Linear(normed, Weights.LmHead, null, logits);
        return logits;
    }
}
