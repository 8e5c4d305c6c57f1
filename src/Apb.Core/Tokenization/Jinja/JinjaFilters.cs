using System.Globalization;
using System.Text;

namespace Apb.Tokenization.Jinja;

/// <summary>
/// The filters and tests of Jinja's standard library that chat templates use, with Jinja's behaviour (trim is
/// Python's strip, default leaves None alone unless boolean=true, first/last of an empty list are undefined, join
/// prints items with str()), and transformers' tojson (no HTML escaping; indent, separators, sort_keys, ensure_ascii).
/// </summary>
internal static class JinjaFilters
{
    private delegate object? Filter(object? value, Arguments a);

    private static readonly Dictionary<string, Filter> Filters = new()
    {
        ["abs"] = (v, a) => { a.Done(); return v switch { long l => (object)Math.Abs(l), double d => Math.Abs(d), bool b => b ? 1L : 0L, _ => throw Type(a, "abs", v) }; },
        ["attr"] = (v, a) => { string name = a.String(0, "name"); a.Done(); return JinjaEvaluator.GetAttribute(v, name, a.Line); },
        ["capitalize"] = (v, a) => { a.Done(); string s = Py.Str(v); return s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant(); },
        ["count"] = (v, a) => { a.Done(); return Py.Length(v, a.Line); },
        ["default"] = Default,
        ["d"] = Default,
        ["dictsort"] = DictSort,
        ["first"] = (v, a) => { a.Done(); return Py.Iterate(v, a.Line) is { Count: > 0 } l ? l[0] : new Undefined("first"); },
        ["float"] = (v, a) => { var fallback = a.Optional(0, "default", 0.0); a.Done(); return ToFloat(v) ?? fallback; },
        ["indent"] = Indent,
        ["int"] = (v, a) =>
        {
            var fallback = a.Optional(0, "default", 0L);
            long numberBase = a.OptionalLong(1, "base") ?? 10;
            a.Done();
            return ToInt(v, (int)numberBase) ?? fallback;
        },
        ["items"] = (v, a) =>
        {
            a.Done();
            return v switch
            {
                OrderedDictionary<string, object?> d => d.Select(p => (object?)new List<object?> { p.Key, p.Value }).ToList(),
                Undefined => new List<object?>(),
                _ => throw Type(a, "items", v),
            };
        },
        ["join"] = (v, a) =>
        {
            string sep = a.OptionalString(0, "d") ?? "";
            string? attribute = a.OptionalString(1, "attribute");
            a.Done();
            var items = Py.Iterate(v, a.Line);
            return string.Join(sep, items.Select(x => Py.Str(attribute is null ? x : AttributePath(x, attribute, a.Line))));
        },
        ["last"] = (v, a) => { a.Done(); return Py.Iterate(v, a.Line) is { Count: > 0 } l ? l[^1] : new Undefined("last"); },
        ["length"] = (v, a) => { a.Done(); return Py.Length(v, a.Line); },
        ["list"] = (v, a) => { a.Done(); return Py.Iterate(v, a.Line).ToList(); },
        ["lower"] = (v, a) => { a.Done(); return Py.Str(v).ToLowerInvariant(); },
        ["map"] = Map,
        ["max"] = (v, a) => MinMax(v, a, max: true),
        ["min"] = (v, a) => MinMax(v, a, max: false),
        ["reject"] = (v, a) => Select(v, a, attribute: false, keep: false),
        ["rejectattr"] = (v, a) => Select(v, a, attribute: true, keep: false),
        ["replace"] = (v, a) =>
        {
            string old = a.String(0, "old"), replacement = a.String(1, "new");
            long count = a.OptionalLong(2, "count") ?? -1;
            a.Done();
            return JinjaMethods.Replace(Py.Str(v), old, replacement, count);
        },
        ["reverse"] = (v, a) =>
        {
            a.Done();
            if (v is string s) return string.Concat(Py.CodePoints(s).Reverse());
            var l = Py.Iterate(v, a.Line).ToList();
            l.Reverse();
            return l;
        },
        ["round"] = (v, a) =>
        {
            long precision = a.OptionalLong(0, "precision") ?? 0;
            string method = a.OptionalString(1, "method") ?? "common";
            a.Done();
            double x = v switch { long l => l, double d => d, bool b => b ? 1 : 0, _ => throw Type(a, "round", v) };
            double scale = Math.Pow(10, precision);
            return method switch
            {
                "common" => Math.Round(x, (int)Math.Clamp(precision, 0, 15), MidpointRounding.ToEven), // Python's round()
                "floor" => Math.Floor(x * scale) / scale,
                "ceil" => Math.Ceiling(x * scale) / scale,
                _ => throw new TemplateException(a.Line, "round: method must be 'common', 'floor' or 'ceil'"),
            };
        },
        ["safe"] = (v, a) => { a.Done(); return v; },
        ["select"] = (v, a) => Select(v, a, attribute: false, keep: true),
        ["selectattr"] = (v, a) => Select(v, a, attribute: true, keep: true),
        ["sort"] = Sort,
        ["string"] = (v, a) => { a.Done(); return Py.Str(v); },
        ["sum"] = (v, a) =>
        {
            string? attribute = a.OptionalString(0, "attribute");
            object? total = a.Optional(1, "start", 0L);
            a.Done();
            foreach (var x in Py.Iterate(v, a.Line))
                total = Py.Arithmetic("+", total, attribute is null ? x : AttributePath(x, attribute, a.Line), a.Line);
            return total;
        },
        ["title"] = (v, a) => { a.Done(); return JinjaTitle(Py.Str(v)); },
        ["tojson"] = ToJson,
        ["trim"] = (v, a) => { string? chars = a.OptionalString(0, "chars"); a.Done(); return Py.Strip(Py.Str(v), chars, true, true); },
        ["unique"] = (v, a) =>
        {
            bool caseSensitive = a.OptionalBool(0, "case_sensitive", false);
            string? attribute = a.OptionalString(1, "attribute");
            a.Done();
            var seen = new List<object?>();
            var result = new List<object?>();
            foreach (var x in Py.Iterate(v, a.Line))
            {
                var key = attribute is null ? x : AttributePath(x, attribute, a.Line);
                if (!caseSensitive && key is string s) key = s.ToLowerInvariant();
                if (seen.Any(k => Py.Equals(k, key))) continue;
                seen.Add(key);
                result.Add(x);
            }
            return result;
        },
        ["upper"] = (v, a) => { a.Done(); return Py.Str(v).ToUpperInvariant(); },
        ["wordcount"] = (v, a) => { a.Done(); return (long)JinjaMethods.Split(Py.Str(v), null, -1, false, a.Line).Count; },
    };

    private delegate bool TestFunction(object? value, List<object?> args, int line);

    private static readonly Dictionary<string, TestFunction> Tests = new()
    {
        ["defined"] = (v, _, _) => v is not Undefined,
        ["undefined"] = (v, _, _) => v is Undefined,
        ["none"] = (v, _, _) => v is null,
        ["boolean"] = (v, _, _) => v is bool,
        ["true"] = (v, _, _) => v is true,
        ["false"] = (v, _, _) => v is false,
        ["integer"] = (v, _, _) => v is long,
        ["float"] = (v, _, _) => v is double,
        ["number"] = (v, _, _) => Py.IsNumber(v),
        ["string"] = (v, _, _) => v is string,
        ["mapping"] = (v, _, _) => v is OrderedDictionary<string, object?>,
        ["iterable"] = (v, _, _) => v is string or List<object?> or OrderedDictionary<string, object?> or Undefined,
        ["sequence"] = (v, _, _) => v is string or List<object?> or OrderedDictionary<string, object?>,
        ["callable"] = (v, _, _) => v is Callable,
        ["odd"] = (v, _, line) => Integer(v, "odd", line) % 2 != 0,
        ["even"] = (v, _, line) => Integer(v, "even", line) % 2 == 0,
        ["divisibleby"] = (v, args, line) => Integer(v, "divisibleby", line) % Integer(Arg(args, "divisibleby", line), "divisibleby", line) == 0,
        ["lower"] = (v, _, _) => v is string s && s == s.ToLowerInvariant(),
        ["upper"] = (v, _, _) => v is string s && s == s.ToUpperInvariant(),
        ["sameas"] = (v, args, line) => SameAs(v, Arg(args, "sameas", line)),
        ["in"] = (v, args, line) => Py.Contains(Arg(args, "in", line), v, line),
        ["eq"] = (v, args, line) => Py.Equals(v, Arg(args, "eq", line)),
        ["ne"] = (v, args, line) => !Py.Equals(v, Arg(args, "ne", line)),
        ["lt"] = (v, args, line) => Py.Compare(v, Arg(args, "lt", line), line) < 0,
        ["le"] = (v, args, line) => Py.Compare(v, Arg(args, "le", line), line) <= 0,
        ["gt"] = (v, args, line) => Py.Compare(v, Arg(args, "gt", line), line) > 0,
        ["ge"] = (v, args, line) => Py.Compare(v, Arg(args, "ge", line), line) >= 0,
    };

    private static readonly Dictionary<string, string> TestAliases = new()
    {
        ["=="] = "eq", ["equalto"] = "eq", ["!="] = "ne", ["<"] = "lt", ["lessthan"] = "lt", ["<="] = "le",
        [">"] = "gt", ["greaterthan"] = "gt", [">="] = "ge", ["escaped"] = "false",
    };

    public static IEnumerable<string> FilterNames => Filters.Keys.Order(StringComparer.Ordinal);
    public static IEnumerable<string> TestNames => Tests.Keys.Concat(TestAliases.Keys).Order(StringComparer.Ordinal);
    public static bool IsFilter(string name) => Filters.ContainsKey(name);
    public static bool IsTest(string name) => Tests.ContainsKey(name) || TestAliases.ContainsKey(name);

    public static object? Apply(string name, object? value, List<object?> args, List<(string Name, object? Value)> kwargs, int line) =>
        Filters[name](value, new Arguments($"the filter '{name}'", args, kwargs, line));

    public static bool Test(string name, object? value, List<object?> args, int line) =>
        Tests[TestAliases.GetValueOrDefault(name, name)](value, args, line);

    private static TemplateException Type(Arguments a, string filter, object? v) =>
        new(a.Line, $"the filter '{filter}' cannot take a {Py.TypeName(v)}");

    private static object? Arg(List<object?> args, string test, int line) =>
        args.Count == 1 ? args[0] : throw new TemplateException(line, $"the test '{test}' takes one argument, got {args.Count}");

    private static long Integer(object? v, string test, int line) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        _ => throw new TemplateException(line, $"the test '{test}' needs an integer, not {Py.TypeName(v)}"),
    };

    private static bool SameAs(object? a, object? b) =>
        a is null || b is null || a is bool || b is bool ? Equals(a, b) && a?.GetType() == b?.GetType() : ReferenceEquals(a, b);

    private static object? Default(object? v, Arguments a)
    {
        var fallback = a.Optional(0, "default_value", "");
        bool boolean = a.OptionalBool(1, "boolean", false);
        a.Done();
        return v is Undefined || (boolean && !Py.Truthy(v)) ? fallback : v;
    }

    private static object? ToJson(object? v, Arguments a)
    {
        bool ensureAscii = a.OptionalBool(0, "ensure_ascii", false);
        var indent = a.Optional(1, "indent");
        var separators = a.Optional(2, "separators");
        bool sortKeys = a.OptionalBool(3, "sort_keys", false);
        a.Done();
        string? indentText = indent switch
        {
            null or Undefined => null,
            long n => new string(' ', (int)Math.Max(0, n)),
            string s => s,
            _ => throw new TemplateException(a.Line, "tojson: indent must be an integer or a string"),
        };
        string item = indentText is null ? ", " : ",", key = ": ";
        if (separators is List<object?> { Count: 2 } sep && sep[0] is string s0 && sep[1] is string s1) (item, key) = (s0, s1);
        else if (separators is not (null or Undefined))
            throw new TemplateException(a.Line, "tojson: separators must be a pair of strings");
        return JinjaJson.Dumps(v, new JinjaJson.Options(indentText, item, key, sortKeys, ensureAscii), a.Line);
    }

    // Jinja's indent: every line but the first (and blank ones unless blank=true) gets the indentation.
    private static object? Indent(object? v, Arguments a)
    {
        var width = a.Optional(0, "width", 4L);
        bool first = a.OptionalBool(1, "first", false);
        bool blank = a.OptionalBool(2, "blank", false);
        a.Done();
        string indentation = width is string w ? w : new string(' ', (int)(width is long n ? n : 4));
        var lines = Py.Str(v).Split('\n').ToList();
        var sb = new StringBuilder(lines[0]);
        for (int i = 1; i < lines.Count; i++)
        {
            sb.Append('\n');
            if (blank || lines[i].Length > 0) sb.Append(indentation);
            sb.Append(lines[i]);
        }
        return first ? indentation + sb : sb.ToString();
    }

    private static object? Map(object? v, Arguments a)
    {
        string? attribute = a.OptionalString(-1, "attribute");
        var items = Py.Iterate(v, a.Line);
        if (attribute is not null)
        {
            var fallback = a.Optional(-1, "default");
            a.Done();
            return items.Select(x => AttributePath(x, attribute, a.Line) is var found && found is Undefined && fallback is not null
                ? fallback : found).ToList();
        }
        string filter = a.String(0, "filter name");
        if (!IsFilter(filter)) throw new TemplateException(a.Line, $"map: the filter '{filter}' is not supported");
        var rest = Enumerable.Range(1, Math.Max(0, a.PositionalCount - 1)).Select(i => a.Optional(i, $"argument {i}")).ToList();
        var kwargs = a.RemainingKwargs();
        a.Done();
        return items.Select(x => Apply(filter, x, rest, kwargs, a.Line)).ToList();
    }

    private static object? Select(object? v, Arguments a, bool attribute, bool keep)
    {
        string? attr = attribute ? a.String(0, "attribute") : null;
        int testAt = attribute ? 1 : 0;
        string? test = a.OptionalString(testAt, "test name");
        if (test is not null && !IsTest(test)) throw new TemplateException(a.Line, $"the test '{test}' is not supported");
        var testArgs = Enumerable.Range(testAt + 1, Math.Max(0, a.PositionalCount - testAt - 1)).Select(i => a.Optional(i, $"argument {i}")).ToList();
        a.Done();
        var result = new List<object?>();
        foreach (var x in Py.Iterate(v, a.Line))
        {
            var subject = attr is null ? x : AttributePath(x, attr, a.Line);
            bool pass = test is null ? Py.Truthy(subject) : Test(test, subject, testArgs, a.Line);
            if (pass == keep) result.Add(x);
        }
        return result;
    }

    private static object? Sort(object? v, Arguments a)
    {
        bool reverse = a.OptionalBool(0, "reverse", false);
        bool caseSensitive = a.OptionalBool(1, "case_sensitive", false);
        string? attribute = a.OptionalString(2, "attribute");
        a.Done();
        object? Key(object? x)
        {
            var k = attribute is null ? x : AttributePath(x, attribute, a.Line);
            return !caseSensitive && k is string s ? s.ToLowerInvariant() : k;
        }
        var items = Py.Iterate(v, a.Line).ToList();
        var sorted = items.Select((x, i) => (x, i)).OrderBy(p => p, Comparer<(object? x, int i)>.Create((p, q) =>
        {
            int c = Py.Compare(Key(p.x), Key(q.x), a.Line);
            return c != 0 ? c : p.i.CompareTo(q.i);
        })).Select(p => p.x).ToList();
        if (reverse) sorted.Reverse();
        return sorted;
    }

    private static object? DictSort(object? v, Arguments a)
    {
        bool caseSensitive = a.OptionalBool(0, "case_sensitive", false);
        string by = a.OptionalString(1, "by") ?? "key";
        bool reverse = a.OptionalBool(2, "reverse", false);
        a.Done();
        if (v is not OrderedDictionary<string, object?> d) throw Type(a, "dictsort", v);
        var pairs = d.Select(p => (object?)new List<object?> { p.Key, p.Value }).ToList();
        var sorted = pairs.OrderBy(p => p, Comparer<object?>.Create((p, q) =>
        {
            object? Key(object? pair)
            {
                var k = ((List<object?>)pair!)[by == "value" ? 1 : 0];
                return !caseSensitive && k is string s ? s.ToLowerInvariant() : k;
            }
            return Py.Compare(Key(p), Key(q), a.Line);
        })).ToList();
        if (reverse) sorted.Reverse();
        return sorted;
    }

    private static object? MinMax(object? v, Arguments a, bool max)
    {
        bool caseSensitive = a.OptionalBool(0, "case_sensitive", false);
        string? attribute = a.OptionalString(1, "attribute");
        a.Done();
        object? best = null;
        object? bestKey = null;
        bool any = false;
        foreach (var x in Py.Iterate(v, a.Line))
        {
            var k = attribute is null ? x : AttributePath(x, attribute, a.Line);
            if (!caseSensitive && k is string s) k = s.ToLowerInvariant();
            if (!any || (max ? Py.Compare(k, bestKey, a.Line) > 0 : Py.Compare(k, bestKey, a.Line) < 0)) (best, bestKey) = (x, k);
            any = true;
        }
        return any ? best : new Undefined(max ? "max" : "min");
    }

    // Jinja's attribute paths ("a.b", "0") read items first, as its environment.getitem does.
    private static object? AttributePath(object? value, string path, int line)
    {
        foreach (var part in path.Split('.'))
            value = long.TryParse(part, out long index) && value is List<object?>
                ? Py.Index(value, index, part)
                : JinjaEvaluator.GetItem(value, part, line);
        return value;
    }

    private static string JinjaTitle(string s)
    {
        // Words begin after "-", whitespace, "(", "{", "[" or "<"; each word is capitalized.
        var sb = new StringBuilder(s.Length);
        bool start = true;
        foreach (char c in s)
        {
            bool boundary = c is '-' or '(' or '{' or '[' or '<' || Py.IsSpace(c);
            sb.Append(boundary ? c : start ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
            start = boundary;
        }
        return sb.ToString();
    }

    private static object? ToFloat(object? v) => v switch
    {
        double d => d,
        long l => (double)l,
        bool b => b ? 1.0 : 0.0,
        string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) => d,
        _ => null,
    };

    private static object? ToInt(object? v, int numberBase) => v switch
    {
        long l => l,
        bool b => b ? 1L : 0L,
        double d when !double.IsNaN(d) && !double.IsInfinity(d) => (long)Math.Truncate(d),
        string s when numberBase == 10 && long.TryParse(s.Trim().Replace("_", ""), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l) => l,
        string s when numberBase == 10 && double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) => (long)Math.Truncate(d),
        string s when numberBase == 16 && long.TryParse(s.Trim().Replace("0x", "").Replace("0X", ""), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out long h) => h,
        _ => null,
    };
}
