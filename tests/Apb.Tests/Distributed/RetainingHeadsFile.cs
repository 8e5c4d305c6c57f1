using System.Text;
using Apb.Checkpoints;

namespace Apb.Tests.Distributed;

/// <summary>Writes random retaining heads (or deliberately wrong ones) as a small F32 safetensors file.</summary>
static class RetainingHeadsFile
{
    static readonly List<string> s_written = new();

    static RetainingHeadsFile()
    {
        // The files are memory-mapped by sessions that live until the test ends: delete them when the run ends.
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            lock (s_written) foreach (var f in s_written) try { File.Delete(f); } catch (IOException) { }
        };
    }

    public static string Write(ModelConfig c, int hidden, int seed, Func<int, string, long[], long[]>? reshape = null, int? layers = null)
    {
        var rng = new Random(seed);
        int input = (c.NumAttentionHeads + 2 * c.NumKeyValueHeads) * c.HeadDim;
        var tensors = new List<(string Name, long[] Shape, float[] Data)>();
        for (int i = 0; i < (layers ?? c.NumHiddenLayers); i++)
            foreach (var (kind, shape) in new[] { ("fc1", new long[] { hidden, input }), ("fc2", new long[] { c.NumKeyValueHeads, hidden }) })
            {
                string name = $"model.layers.{i}.self_attn.{kind}.weight";
                var s = reshape?.Invoke(i, kind, shape) ?? shape;
                var data = new float[s.Aggregate(1L, (a, b) => a * b)];
                for (int j = 0; j < data.Length; j++) data[j] = (float)((rng.NextDouble() * 2 - 1) * 0.3);
                tensors.Add((name, s, data));
            }
        return Write(tensors);
    }

    public static string Write(IEnumerable<(string Name, long[] Shape, float[] Data)> tensors)
    {
        var header = new StringBuilder("{");
        long offset = 0;
        var list = tensors.ToList();
        foreach (var (name, shape, data) in list)
        {
            if (header.Length > 1) header.Append(',');
            long end = offset + data.Length * 4L;
            header.Append($"\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{offset},{end}]}}");
            offset = end;
        }
        header.Append('}');
        var json = Encoding.UTF8.GetBytes(header.ToString());
        string path = Path.Combine(Path.GetTempPath(), $"apb-retaining-{Guid.NewGuid():N}.safetensors");
        lock (s_written) s_written.Add(path);
        using var f = File.Create(path);
        f.Write(BitConverter.GetBytes((long)json.Length));
        f.Write(json);
        foreach (var (_, _, data) in list)
        {
            var bytes = new byte[data.Length * 4];
            Buffer.BlockCopy(data, 0, bytes, 0, bytes.Length);
            f.Write(bytes);
        }
        return path;
    }
}
