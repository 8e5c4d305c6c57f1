using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Apb.Tokenization.Jinja;

/// <summary>
/// JSON in and out of templates: request values (chat_template_kwargs, tool definitions) become template values as
/// Python's json.loads makes them, and the tojson filter writes as transformers' override of it does, which is
/// Python's json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys).
/// </summary>
internal static class JinjaJson
{
    public static object? FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Null or JsonValueKind.Undefined => null,
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => IsInteger(e.GetRawText()) && e.TryGetInt64(out long l) ? (object)l : e.GetDouble(),
        JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.Object => ToDict(e),
        _ => null,
    };

    private static bool IsInteger(string raw) => raw.AsSpan().IndexOfAny(".eE") < 0;

    private static OrderedDictionary<string, object?> ToDict(JsonElement e)
    {
        var d = new OrderedDictionary<string, object?>();
        foreach (var p in e.EnumerateObject()) d[p.Name] = FromJson(p.Value); // a repeated key keeps its last value, as json.loads
        return d;
    }

    public sealed record Options(string? Indent, string ItemSeparator, string KeySeparator, bool SortKeys, bool EnsureAscii);

    public static string Dumps(object? value, Options options, int line)
    {
        var sb = new StringBuilder();
        Write(sb, value, options, 0, line);
        return sb.ToString();
    }

    private static void Write(StringBuilder sb, object? v, Options o, int depth, int line)
    {
        switch (v)
        {
            case null: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : Py.FloatRepr(d));
                break;
            case string s: WriteString(sb, s, o.EnsureAscii); break;
            case List<object?> list:
                WriteContainer(sb, '[', ']', list.Count, o, depth, i => Write(sb, list[i], o, depth + 1, line));
                break;
            case OrderedDictionary<string, object?> dict:
                var pairs = o.SortKeys ? dict.OrderBy(p => p.Key, StringComparer.Ordinal).ToList() : dict.ToList();
                WriteContainer(sb, '{', '}', pairs.Count, o, depth, i =>
                {
                    WriteString(sb, pairs[i].Key, o.EnsureAscii);
                    sb.Append(o.KeySeparator);
                    Write(sb, pairs[i].Value, o, depth + 1, line);
                });
                break;
            default:
                throw new TemplateException(line, $"tojson: Object of type {Py.TypeName(v)} is not JSON serializable");
        }
    }

    private static void WriteContainer(StringBuilder sb, char open, char close, int count, Options o, int depth, Action<int> item)
    {
        sb.Append(open);
        if (count == 0)
        {
            sb.Append(close);
            return;
        }
        for (int i = 0; i < count; i++)
        {
            if (i > 0) sb.Append(o.ItemSeparator);
            if (o.Indent is not null) sb.Append('\n').Insert(sb.Length, o.Indent, depth + 1);
            item(i);
        }
        if (o.Indent is not null) sb.Append('\n').Insert(sb.Length, o.Indent, depth);
        sb.Append(close);
    }

    private static void WriteString(StringBuilder sb, string s, bool ensureAscii)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < ' ' || (ensureAscii && c > '\x7f')) sb.Append($"\\u{(int)c:x4}");
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
