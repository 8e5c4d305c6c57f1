using System.Text;

namespace Apb.Tokenization.Jinja;

/// <summary>
/// The Python methods templates call on values: str's strip/lstrip/rstrip, startswith/endswith, split/rsplit,
/// upper/lower/title/capitalize, replace, find/rfind, count, join, splitlines and the is* checks; dict's items, keys,
/// values and get; loop.cycle. Methods that would change a value (list.append, dict.update) are refused, as in
/// transformers' immutable sandbox.
/// </summary>
internal static class JinjaMethods
{
    private static readonly HashSet<string> StringMethods =
    [
        "strip", "lstrip", "rstrip", "startswith", "endswith", "split", "rsplit", "upper", "lower", "title", "capitalize",
        "replace", "find", "rfind", "count", "join", "splitlines", "isdigit", "isalpha", "isalnum", "isspace", "isupper",
        "islower",
    ];

    private static readonly HashSet<string> DictMethods = ["items", "keys", "values", "get"];

    /// <summary>obj.name when it names a method of obj's type, else null.</summary>
    public static BoundMethod? Find(object? receiver, string name) => receiver switch
    {
        string s when StringMethods.Contains(name) => new BoundMethod(s, name),
        OrderedDictionary<string, object?> d when DictMethods.Contains(name) => new BoundMethod(d, name),
        _ => null,
    };

    public static object? Call(object receiver, string name, List<object?> args, List<(string Name, object? Value)> kwargs, int line)
    {
        var a = new Arguments($"{Py.TypeName(receiver)}.{name}()", args, kwargs, line);
        switch (receiver)
        {
            case string s: return CallString(s, name, a);
            case OrderedDictionary<string, object?> d: return CallDict(d, name, a);
            case LoopInfo loop when name == "cycle":
                a.Done();
                return args.Count == 0 ? new Undefined("loop.cycle()") : args[loop.Index0 % args.Count];
            default: throw new TemplateException(line, $"{Py.TypeName(receiver)} has no method '{name}'");
        }
    }

    private static object? CallString(string s, string name, Arguments a)
    {
        switch (name)
        {
            case "strip" or "lstrip" or "rstrip":
            {
                var chars = a.OptionalString(0, "chars");
                a.Done();
                return Py.Strip(s, chars, name != "rstrip", name != "lstrip");
            }
            case "startswith" or "endswith":
            {
                var affix = a.Required(0, "prefix");
                a.Done();
                var options = affix is List<object?> list ? list : [affix];
                return options.Any(o => o is string x
                    ? name == "startswith" ? s.StartsWith(x, StringComparison.Ordinal) : s.EndsWith(x, StringComparison.Ordinal)
                    : throw new TemplateException(a.Line, $"{name}() takes a string or a tuple of strings, not {Py.TypeName(o)}"));
            }
            case "split" or "rsplit":
            {
                var sep = a.OptionalString(0, "sep");
                long max = a.OptionalLong(1, "maxsplit") ?? -1;
                a.Done();
                return Split(s, sep, max, fromRight: name == "rsplit", a.Line).Select(x => (object?)x).ToList();
            }
            case "upper": a.Done(); return s.ToUpperInvariant();
            case "lower": a.Done(); return s.ToLowerInvariant();
            case "title": a.Done(); return Title(s);
            case "capitalize":
                a.Done();
                return s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();
            case "replace":
            {
                string old = a.String(0, "old"), replacement = a.String(1, "new");
                long count = a.OptionalLong(2, "count") ?? -1;
                a.Done();
                return Replace(s, old, replacement, count);
            }
            case "find" or "rfind":
            {
                string sub = a.String(0, "sub");
                a.Done();
                int i = name == "find" ? s.IndexOf(sub, StringComparison.Ordinal) : s.LastIndexOf(sub, StringComparison.Ordinal);
                return i < 0 ? -1L : (long)(Py.HasSurrogates(s) ? s[..i].EnumerateRunes().Count() : i);
            }
            case "count":
            {
                string sub = a.String(0, "sub");
                a.Done();
                if (sub.Length == 0) return Py.Length(s, a.Line) + 1;
                long n = 0;
                for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
                return n;
            }
            case "join":
            {
                var items = Py.Iterate(a.Required(0, "iterable"), a.Line);
                a.Done();
                return string.Join(s, items.Select(x => x as string
                    ?? throw new TemplateException(a.Line, $"str.join() needs strings, found {Py.TypeName(x)}")));
            }
            case "splitlines":
                a.Done();
                return SplitLines(s).Select(x => (object?)x).ToList();
            case "isdigit": a.Done(); return s.Length > 0 && s.All(char.IsDigit);
            case "isalpha": a.Done(); return s.Length > 0 && s.All(char.IsLetter);
            case "isalnum": a.Done(); return s.Length > 0 && s.All(char.IsLetterOrDigit);
            case "isspace": a.Done(); return s.Length > 0 && s.All(Py.IsSpace);
            case "isupper": a.Done(); return s.Any(char.IsLetter) && !s.Any(char.IsLower);
            case "islower": a.Done(); return s.Any(char.IsLetter) && !s.Any(char.IsUpper);
            default: throw new TemplateException(a.Line, $"str has no method '{name}'");
        }
    }

    private static object? CallDict(OrderedDictionary<string, object?> d, string name, Arguments a)
    {
        switch (name)
        {
            case "items":
                a.Done();
                return d.Select(p => (object?)new List<object?> { p.Key, p.Value }).ToList();
            case "keys":
                a.Done();
                return d.Keys.Select(k => (object?)k).ToList();
            case "values":
                a.Done();
                return d.Values.ToList();
            case "get":
            {
                var key = a.Required(0, "key");
                var fallback = a.Optional(1, "default");
                a.Done();
                return key is string k && d.TryGetValue(k, out var v) ? v : fallback;
            }
            default: throw new TemplateException(a.Line, $"dict has no method '{name}'");
        }
    }

    /// <summary>Python's str.split / rsplit: with no separator, on runs of whitespace, dropping empty parts.</summary>
    public static List<string> Split(string s, string? sep, long maxSplit, bool fromRight, int line)
    {
        var parts = new List<string>();
        if (sep is null)
        {
            var words = new List<(int Start, int End)>();
            for (int i = 0; i < s.Length;)
            {
                while (i < s.Length && Py.IsSpace(s[i])) i++;
                if (i == s.Length) break;
                int start = i;
                while (i < s.Length && !Py.IsSpace(s[i])) i++;
                words.Add((start, i));
            }
            // Only a split that uses up maxsplit leaves a remainder, which keeps its outer whitespace (Python's).
            if (maxSplit < 0 || words.Count <= maxSplit) return words.Select(w => s[w.Start..w.End]).ToList();
            if (!fromRight)
            {
                parts.AddRange(words.Take((int)maxSplit).Select(w => s[w.Start..w.End]));
                parts.Add(s[words[(int)maxSplit].Start..]); // the rest keeps its trailing whitespace, as Python's
            }
            else
            {
                int keep = words.Count - (int)maxSplit;
                parts.Add(s[..words[keep - 1].End]);
                parts.AddRange(words.Skip(keep).Select(w => s[w.Start..w.End]));
            }
            return parts;
        }
        if (sep.Length == 0) throw new TemplateException(line, "empty separator in split()");
        var all = s.Split(sep);
        if (maxSplit < 0 || all.Length <= maxSplit + 1) return all.ToList();
        if (!fromRight)
        {
            parts.AddRange(all.Take((int)maxSplit));
            parts.Add(string.Join(sep, all.Skip((int)maxSplit)));
        }
        else
        {
            parts.Add(string.Join(sep, all.Take(all.Length - (int)maxSplit)));
            parts.AddRange(all.Skip(all.Length - (int)maxSplit));
        }
        return parts;
    }

    public static string Replace(string s, string old, string replacement, long count)
    {
        if (count < 0) return old.Length == 0 ? InsertEverywhere(s, replacement) : s.Replace(old, replacement, StringComparison.Ordinal);
        var sb = new StringBuilder();
        int at = 0;
        for (long n = 0; n < count; n++)
        {
            int i = s.IndexOf(old, at, StringComparison.Ordinal);
            if (i < 0 || old.Length == 0) break;
            sb.Append(s, at, i - at).Append(replacement);
            at = i + old.Length;
        }
        return sb.Append(s, at, s.Length - at).ToString();
    }

    private static string InsertEverywhere(string s, string x) => x + string.Concat(Py.CodePoints(s).Select(c => c + x));

    /// <summary>Python's str.title(): a letter after a non-letter is upper-cased, other letters lower-cased.</summary>
    public static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool previousCased = false;
        foreach (char c in s)
        {
            bool letter = char.IsLetter(c);
            sb.Append(letter ? previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c) : c);
            previousCased = letter;
        }
        return sb.ToString();
    }

    private static List<string> SplitLines(string s)
    {
        var lines = new List<string>();
        int start = 0;
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c is '\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029')
            {
                lines.Add(s[start..i]);
                if (c == '\r' && i + 1 < s.Length && s[i + 1] == '\n') i++;
                start = i + 1;
            }
        }
        if (start < s.Length) lines.Add(s[start..]);
        return lines;
    }
}

/// <summary>Positional and keyword arguments of a call, read by position or name; leftovers are an error.</summary>
internal sealed class Arguments(string callee, List<object?> args, List<(string Name, object? Value)> kwargs, int line)
{
    private readonly HashSet<string> _used = new();
    private int _positionalUsed;

    public int Line => line;

    public int PositionalCount => args.Count;

    /// <summary>The keyword arguments not read yet, passed on (map's filter arguments); they count as read.</summary>
    public List<(string Name, object? Value)> RemainingKwargs()
    {
        var rest = kwargs.Where(k => !_used.Contains(k.Name)).ToList();
        foreach (var (n, _) in rest) _used.Add(n);
        return rest;
    }

    public object? Optional(int position, string name, object? fallback = null)
    {
        foreach (var (n, v) in kwargs)
            if (n == name)
            {
                _used.Add(n);
                return v;
            }
        if (position >= 0 && position < args.Count)
        {
            _positionalUsed = Math.Max(_positionalUsed, position + 1);
            return args[position];
        }
        return fallback;
    }

    public object? Required(int position, string name)
    {
        bool present = kwargs.Any(k => k.Name == name) || (position >= 0 && position < args.Count);
        if (!present) throw new TemplateException(line, $"{callee} needs the argument '{name}'");
        return Optional(position, name);
    }

    public string String(int position, string name) => Required(position, name) is string s ? s
        : throw new TemplateException(line, $"{callee}: '{name}' must be a string");

    public string? OptionalString(int position, string name) => Optional(position, name) switch
    {
        null or Undefined => null,
        string s => s,
        var other => throw new TemplateException(line, $"{callee}: '{name}' must be a string, not {Py.TypeName(other)}"),
    };

    public long? OptionalLong(int position, string name) => Optional(position, name) switch
    {
        null or Undefined => null,
        long l => l,
        bool b => b ? 1 : 0,
        var other => throw new TemplateException(line, $"{callee}: '{name}' must be an integer, not {Py.TypeName(other)}"),
    };

    public bool OptionalBool(int position, string name, bool fallback) => Optional(position, name) is { } v and not Undefined
        ? Py.Truthy(v) : fallback;

    /// <summary>Fails on arguments nobody read.</summary>
    public void Done()
    {
        if (args.Count > _positionalUsed)
            throw new TemplateException(line, $"{callee} got {args.Count} positional arguments; it takes {_positionalUsed}");
        foreach (var (n, _) in kwargs)
            if (!_used.Contains(n)) throw new TemplateException(line, $"{callee} got an unexpected keyword argument '{n}'");
    }
}
