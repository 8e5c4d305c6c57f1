using System.Globalization;
using System.Text;

namespace Apb.Tokenization.Jinja;

/// <summary>
/// Python's semantics for template values, where chat templates depend on them: truthiness, str() and repr(),
/// equality and ordering (1 == 1.0 == True), + - * / // % **, len() and indexing by code point, slices.
/// </summary>
internal static class Py
{
    public static bool Truthy(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> l => l.Count > 0,
        OrderedDictionary<string, object?> d => d.Count > 0,
        _ => true,
    };

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        Undefined => "Undefined",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        OrderedDictionary<string, object?> => "dict",
        Namespace => "Namespace",
        LoopInfo => "LoopContext",
        Callable => "function",
        _ => v.GetType().Name,
    };

    /// <summary>str(v), as {{ v }} prints it (Undefined prints as "").</summary>
    public static string Str(object? v) => v switch
    {
        null => "None",
        Undefined => "",
        string s => s,
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FloatRepr(d),
        _ => Repr(v),
    };

    public static string Repr(object? v)
    {
        switch (v)
        {
            case string s: return StringRepr(s);
            case List<object?> list: return "[" + string.Join(", ", list.Select(Repr)) + "]";
            case OrderedDictionary<string, object?> dict:
                return "{" + string.Join(", ", dict.Select(p => StringRepr(p.Key) + ": " + Repr(p.Value))) + "}";
            case Namespace ns: return "<Namespace " + Repr(new OrderedDictionary<string, object?>(ns.Attributes)) + ">";
            case Callable c: return $"<function {c.Name}>";
            case LoopInfo: return "<LoopContext>";
            default: return Str(v);
        }
    }

    private static string StringRepr(string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder().Append(quote);
        foreach (char c in s)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c == quote) sb.Append('\\').Append(c);
                    else if (c < ' ' || c == '\x7f') sb.Append($"\\x{(int)c:x2}");
                    else sb.Append(c);
                    break;
            }
        }
        return sb.Append(quote).ToString();
    }

    /// <summary>Python's repr(float): the shortest round-trip digits, scientific below 1e-4 and from 1e16.</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        string r = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
        int e = r.IndexOfAny(['E', 'e']);
        string mantissa = e < 0 ? r : r[..e];
        int exponent = e < 0 ? 0 : int.Parse(r[(e + 1)..], CultureInfo.InvariantCulture);
        int dot = mantissa.IndexOf('.');
        string digits = mantissa.Replace(".", "");
        int point = (dot < 0 ? mantissa.Length : dot) + exponent; // value = 0.digits * 10^point
        int lead = digits.Length - digits.TrimStart('0').Length;
        digits = digits.TrimStart('0');
        point -= lead;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        string sign = d < 0 ? "-" : "";
        if (point > -4 && point <= 16)
        {
            if (point <= 0) return sign + "0." + new string('0', -point) + digits;
            if (point >= digits.Length) return sign + digits + new string('0', point - digits.Length) + ".0";
            return sign + digits[..point] + "." + digits[point..];
        }
        int x = point - 1;
        string m = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
        return $"{sign}{m}e{(x < 0 ? "-" : "+")}{Math.Abs(x):00}";
    }

    public static bool IsNumber(object? v) => v is long or double or bool;

    private static double AsDouble(object? v) => v switch { long l => l, double d => d, bool b => b ? 1 : 0, _ => 0 };
    private static long AsLong(object? v) => v switch { long l => l, bool b => b ? 1 : 0, _ => 0 };

    public static new bool Equals(object? a, object? b)
    {
        if (a is null || b is null) return a is null && b is null;
        if (a is Undefined || b is Undefined) return a is Undefined && b is Undefined;
        if (IsNumber(a) && IsNumber(b))
            return a is double || b is double ? AsDouble(a) == AsDouble(b) : AsLong(a) == AsLong(b);
        if (a is string sa && b is string sb) return string.Equals(sa, sb, StringComparison.Ordinal);
        if (a is List<object?> la && b is List<object?> lb) return la.Count == lb.Count && la.Zip(lb).All(p => Equals(p.First, p.Second));
        if (a is OrderedDictionary<string, object?> da && b is OrderedDictionary<string, object?> db)
            return da.Count == db.Count && da.All(p => db.TryGetValue(p.Key, out var v) && Equals(p.Value, v));
        return ReferenceEquals(a, b);
    }

    /// <summary>Python's ordering for &lt; &lt;= &gt; &gt;=: numbers, strings by code point, lists element by element.</summary>
    public static int Compare(object? a, object? b, int line)
    {
        if (IsNumber(a) && IsNumber(b))
            return a is double || b is double ? AsDouble(a).CompareTo(AsDouble(b)) : AsLong(a).CompareTo(AsLong(b));
        if (a is string sa && b is string sb) return CompareCodePoints(sa, sb);
        if (a is List<object?> la && b is List<object?> lb)
        {
            for (int i = 0; i < Math.Min(la.Count, lb.Count); i++)
                if (!Equals(la[i], lb[i])) return Compare(la[i], lb[i], line);
            return la.Count.CompareTo(lb.Count);
        }
        throw new TemplateException(line, $"cannot order {TypeName(a)} and {TypeName(b)}");
    }

    private static int CompareCodePoints(string a, string b)
    {
        var ea = a.EnumerateRunes();
        var eb = b.EnumerateRunes();
        while (true)
        {
            bool ma = ea.MoveNext(), mb = eb.MoveNext();
            if (!ma || !mb) return ma.CompareTo(mb);
            int c = ea.Current.Value.CompareTo(eb.Current.Value);
            if (c != 0) return c;
        }
    }

    public static object? Arithmetic(string op, object? a, object? b, int line)
    {
        if (op == "+" && a is string s1 && b is string s2) return s1 + s2;
        if (op == "+" && a is List<object?> l1 && b is List<object?> l2) return l1.Concat(l2).ToList();
        if (op == "*" && (a is string || b is string) && (IsNumber(a) || IsNumber(b)))
        {
            string s = a as string ?? (string)b!;
            long n = AsLong(a is string ? b : a);
            return n <= 0 ? "" : new StringBuilder().Insert(0, s, (int)n).ToString();
        }
        if (!IsNumber(a) || !IsNumber(b))
            throw new TemplateException(line, $"unsupported operand types for {op}: {TypeName(a)} and {TypeName(b)}" +
                                              (op == "+" ? " (use ~ to join text with other values)" : ""));
        bool floats = a is double || b is double;
        switch (op)
        {
            case "+": return floats ? AsDouble(a) + AsDouble(b) : (object)(AsLong(a) + AsLong(b));
            case "-": return floats ? AsDouble(a) - AsDouble(b) : (object)(AsLong(a) - AsLong(b));
            case "*": return floats ? AsDouble(a) * AsDouble(b) : (object)(AsLong(a) * AsLong(b));
            case "/":
                if (AsDouble(b) == 0) throw new TemplateException(line, "division by zero");
                return AsDouble(a) / AsDouble(b);
            case "//":
                if (AsDouble(b) == 0) throw new TemplateException(line, "division by zero");
                return floats ? Math.Floor(AsDouble(a) / AsDouble(b)) : (object)FloorDiv(AsLong(a), AsLong(b));
            case "%":
                if (AsDouble(b) == 0) throw new TemplateException(line, "modulo by zero");
                if (floats)
                {
                    double x = AsDouble(a), y = AsDouble(b), r = x % y;
                    return r != 0 && (r < 0) != (y < 0) ? r + y : r;
                }
                long q = AsLong(a) % AsLong(b);
                return q != 0 && (q < 0) != (AsLong(b) < 0) ? q + AsLong(b) : q;
            case "**":
                if (!floats && AsLong(b) >= 0) return (long)Math.Pow(AsLong(a), AsLong(b));
                return Math.Pow(AsDouble(a), AsDouble(b));
            default: throw new TemplateException(line, $"unknown operator {op}");
        }
    }

    private static long FloorDiv(long a, long b)
    {
        long q = a / b;
        return (a % b != 0) && ((a < 0) != (b < 0)) ? q - 1 : q;
    }

    public static bool Contains(object? container, object? item, int line) => container switch
    {
        string s when item is string sub => s.Contains(sub, StringComparison.Ordinal),
        string => throw new TemplateException(line, $"'in <string>' requires a string on the left, not {TypeName(item)}"),
        List<object?> l => l.Any(x => Equals(x, item)),
        OrderedDictionary<string, object?> d => item is string k && d.ContainsKey(k),
        Undefined => false,
        _ => throw new TemplateException(line, $"'in' needs a string, list or dict on the right, not {TypeName(container)}"),
    };

    // Strings are indexed by code point, as in Python; only strings with surrogate pairs need the conversion.
    public static bool HasSurrogates(string s) => s.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') >= 0;

    public static string[] CodePoints(string s)
    {
        var list = new List<string>(s.Length);
        foreach (var r in s.EnumerateRunes()) list.Add(r.ToString());
        return list.ToArray();
    }

    public static long Length(object? v, int line) => v switch
    {
        string s => HasSurrogates(s) ? s.EnumerateRunes().Count() : s.Length,
        List<object?> l => l.Count,
        OrderedDictionary<string, object?> d => d.Count,
        Undefined => 0,
        _ => throw new TemplateException(line, $"object of type {TypeName(v)} has no length"),
    };

    /// <summary>v[index] for a list or string with Python's negative indices; out of range gives Undefined (as Jinja).</summary>
    public static object? Index(object? v, long index, string what)
    {
        switch (v)
        {
            case List<object?> l:
                if (index < 0) index += l.Count;
                return index >= 0 && index < l.Count ? l[(int)index] : new Undefined(what);
            case string s:
                var chars = HasSurrogates(s) ? CodePoints(s) : null;
                int n = chars?.Length ?? s.Length;
                if (index < 0) index += n;
                if (index < 0 || index >= n) return new Undefined(what);
                return chars is null ? s[(int)index].ToString() : chars[index];
            default:
                return new Undefined(what);
        }
    }

    /// <summary>Python's slice semantics (negative and missing bounds, negative steps).</summary>
    public static object? Slice(object? v, long? start, long? stop, long? step, int line)
    {
        long st = step ?? 1;
        if (st == 0) throw new TemplateException(line, "slice step cannot be zero");
        IReadOnlyList<object?> items = v switch
        {
            List<object?> l => l,
            string s => HasSurrogates(s) ? CodePoints(s) : s.Select(c => (object?)c.ToString()).ToList(),
            Undefined => [],
            _ => throw new TemplateException(line, $"cannot slice a {TypeName(v)}"),
        };
        long n = items.Count;
        long Clamp(long? x, long fallback, long low, long high)
        {
            if (x is null) return fallback;
            long i = x.Value < 0 ? x.Value + n : x.Value;
            return Math.Clamp(i, low, high);
        }
        var result = new List<object?>();
        if (st > 0)
            for (long i = Clamp(start, 0, 0, n), end = Clamp(stop, n, 0, n); i < end; i += st) result.Add(items[(int)i]);
        else
            for (long i = Clamp(start, n - 1, -1, n - 1), end = Clamp(stop, -1, -1, n - 1); i > end; i += st) result.Add(items[(int)i]);
        return v is string ? string.Concat(result.Cast<string>()) : result;
    }

    /// <summary>What "for x in v" walks: list items, string characters, dict keys; Undefined is empty.</summary>
    public static List<object?> Iterate(object? v, int line) => v switch
    {
        List<object?> l => l,
        string s => CodePoints(s).Select(c => (object?)c).ToList(),
        OrderedDictionary<string, object?> d => d.Keys.Select(k => (object?)k).ToList(),
        Undefined => [],
        _ => throw new TemplateException(line, $"{TypeName(v)} is not iterable"),
    };

    public static bool IsSpace(char c) => JinjaLexer.IsPythonWhitespace(c);

    public static string Strip(string s, string? chars, bool left, bool right)
    {
        int start = 0, end = s.Length;
        bool Strips(char c) => chars is null ? IsSpace(c) : chars.Contains(c);
        if (left) while (start < end && Strips(s[start])) start++;
        if (right) while (end > start && Strips(s[end - 1])) end--;
        return s[start..end];
    }
}
