using Apb.Checkpoints;

namespace Apb.Strategies.Apb;

/// <summary>
/// Locret's retaining heads for every layer, from one safetensors file: model.layers.{i}.self_attn.fc1.weight
/// [hidden, (n_h + 2 n_kv) d] and fc2.weight [n_kv, hidden], no biases. The hidden width (1024 in the published heads) is
/// read from fc1. Shapes are checked at open, so a file for another model fails naming the tensor. The file stays
/// memory-mapped while this object lives: the weights point into it.
/// </summary>
public sealed class RetainingHeads : IDisposable
{
    readonly SafeTensorsFile _file;
    readonly WeightView[] _fc1, _fc2;

    public string Path => _file.Path;
    public int HiddenSize { get; }
    public int Layers => _fc1.Length;

    RetainingHeads(SafeTensorsFile file, WeightView[] fc1, WeightView[] fc2, int hidden)
    {
        _file = file; _fc1 = fc1; _fc2 = fc2; HiddenSize = hidden;
    }

    public WeightView Fc1(int layer) => _fc1[layer];
    public WeightView Fc2(int layer) => _fc2[layer];

    public static unsafe RetainingHeads Open(string path, ModelConfig config)
    {
        if (!File.Exists(path))
            throw new ApbException($"{path}: retaining heads file not found (expected a safetensors file with model.layers.{{i}}.self_attn.fc1.weight and fc2.weight for each of the {config.NumHiddenLayers} layers; or use --scorer query, which needs no file)");
        var file = SafeTensorsFile.Open(path);
        try
        {
            long input = (long)(config.NumAttentionHeads + 2 * config.NumKeyValueHeads) * config.HeadDim;
            string inputText = $"(n_h + 2 n_kv) x head_dim = ({config.NumAttentionHeads} + 2 x {config.NumKeyValueHeads}) x {config.HeadDim} = {input}";
            TensorInfo Find(string name, string expected)
            {
                if (!file.Tensors.TryGetValue(name, out var t))
                    throw new ApbException($"{path}: tensor '{name}' is missing (expected shape {expected}): the retaining heads are incomplete or for another model");
                if (t.DType is not (DType.F32 or DType.F16 or DType.BF16))
                    throw new ApbException($"{path}: tensor '{name}' is {DTypes.Name(t.DType)}; retaining heads must be F32, F16 or BF16");
                return t;
            }

            var first = Find("model.layers.0.self_attn.fc1.weight", $"[hidden, {input}]");
            if (first.Shape.Length != 2 || first.Shape[0] < 1)
                throw new ApbException($"{path}: tensor 'model.layers.0.self_attn.fc1.weight' has shape {first.ShapeText}, expected [hidden, {input}]");
            long hidden = first.Shape[0];

            var fc1 = new WeightView[config.NumHiddenLayers];
            var fc2 = new WeightView[config.NumHiddenLayers];
            for (int i = 0; i < config.NumHiddenLayers; i++)
            {
                WeightView Get(string name, long rows, long cols, string why)
                {
                    string expected = $"[{rows}, {cols}]";
                    var t = Find(name, expected);
                    if (t.Shape.Length != 2 || t.Shape[0] != rows || t.Shape[1] != cols)
                        throw new ApbException($"{path}: tensor '{name}' has shape {t.ShapeText} but this model needs {expected} ({why}): the retaining heads are for another model");
                    return new WeightView(name, t.DType, t.Shape, file.Pointer(t));
                }
                string p = $"model.layers.{i}.self_attn.";
                fc1[i] = Get(p + "fc1.weight", hidden, input, $"hidden {hidden} from layer 0's fc1, input {inputText}");
                fc2[i] = Get(p + "fc2.weight", config.NumKeyValueHeads, hidden, $"num_key_value_heads {config.NumKeyValueHeads} x hidden {hidden}");
            }
            return new RetainingHeads(file, fc1, fc2, (int)hidden);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public void Dispose() => _file.Dispose();
}
