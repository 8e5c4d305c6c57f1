using System.Text;
using System.Text.Json;

namespace Apb.Eval;

/// <summary>
/// Samples as JSON lines for training and inspection, one object a line:
/// {"task", "length", "index", "context", "query", "answers", "answer_text", "context_ids", "query_ids", "answer_ids"}.
/// Written with Utf8JsonWriter (no reflection: AOT-clean).
/// </summary>
public static class SampleJsonl
{
    public static void Write(Stream stream, IEnumerable<EncodedSample> samples)
    {
        var opts = new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        foreach (var e in samples)
        {
            using (var w = new Utf8JsonWriter(stream, opts))
            {
                var s = e.Sample;
                w.WriteStartObject();
                w.WriteString("task", s.Task);
                w.WriteNumber("length", s.TargetTokens);
                w.WriteNumber("index", s.Index);
                w.WriteString("context", s.Context);
                w.WriteString("query", s.Query);
                w.WriteStartArray("answers");
                foreach (var a in s.Answers) w.WriteStringValue(a);
                w.WriteEndArray();
                w.WriteString("answer_text", s.AnswerText);
                Ids(w, "context_ids", e.ContextIds);
                Ids(w, "query_ids", e.QueryIds);
                Ids(w, "answer_ids", e.AnswerIds);
                w.WriteEndObject();
            }
            stream.WriteByte((byte)'\n');
        }
    }

    /// <summary>
    /// The compact training form, one sample a line: task TAB context ids TAB query ids TAB answer ids (ids space-separated).
    /// A reader parses it several times faster than JSON (numpy: fromstring(field, sep=' ')).
    /// </summary>
    public static void WriteIds(Stream stream, IEnumerable<EncodedSample> samples)
    {
        using var w = new StreamWriter(stream, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
        foreach (var e in samples)
        {
            w.Write(e.Sample.Task);
            foreach (var ids in (int[][])[e.ContextIds, e.QueryIds, e.AnswerIds])
            {
                w.Write('\t');
                for (int i = 0; i < ids.Length; i++)
                {
                    if (i > 0) w.Write(' ');
                    w.Write(ids[i]);
                }
            }
            w.Write('\n');
        }
    }

    static void Ids(Utf8JsonWriter w, string name, int[] ids)
    {
        w.WriteStartArray(name);
        foreach (var i in ids) w.WriteNumberValue(i);
        w.WriteEndArray();
    }

    /// <summary>Reads what <see cref="Write"/> wrote (strings and ids).</summary>
    public static List<EncodedSample> Read(string path)
    {
        var r = new List<EncodedSample>();
        int line = 0;
        foreach (var text in File.ReadLines(path, Encoding.UTF8))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            try
            {
                using var doc = JsonDocument.Parse(text);
                var o = doc.RootElement;
                var s = new EvalSample(o.GetProperty("task").GetString()!, o.GetProperty("length").GetInt32(), o.GetProperty("index").GetInt32(),
                    o.GetProperty("context").GetString()!, o.GetProperty("query").GetString()!,
                    o.GetProperty("answers").EnumerateArray().Select(a => a.GetString()!).ToList());
                int[] Ids(string n) => o.GetProperty(n).EnumerateArray().Select(x => x.GetInt32()).ToArray();
                r.Add(new EncodedSample(s, Ids("context_ids"), Ids("query_ids"), Ids("answer_ids")));
            }
            catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new ApbException($"{path}:{line}: not a sample line ({ex.Message}); expected what `apb eval generate` writes");
            }
        }
        return r;
    }
}
