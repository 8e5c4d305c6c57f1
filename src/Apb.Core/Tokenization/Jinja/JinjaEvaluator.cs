using System.Text;

namespace Apb.Tokenization.Jinja;

/// <summary>
/// Runs a parsed template. Scoping as Jinja's: a for loop's body gets a fresh scope each iteration (a {% set %} inside
/// does not leak out or into the next iteration; namespace() is the way out), if blocks share their scope, a macro
/// runs in a scope of its own over the one it was defined in. Attribute access as Jinja's: a method of the value's
/// type first, then the item of that name; reading anything from an undefined value fails.
/// </summary>
internal sealed class JinjaEvaluator
{
    private const int MaxCallDepth = 200;
    private const int MaxRange = 100_000;

    private sealed class Frame(Frame? parent)
    {
        public Frame? Parent => parent;
        public Dictionary<string, object?> Variables { get; } = new(StringComparer.Ordinal);

        public bool TryGet(string name, out object? value)
        {
            for (var f = this; f is not null; f = f.Parent)
                if (f.Variables.TryGetValue(name, out value)) return true;
            value = null;
            return false;
        }
    }

    private enum Flow { Normal, Break, Continue }

    private sealed class Macro(JinjaEvaluator evaluator, MacroNode node, Frame scope) : Callable
    {
        public override string Name => node.Name;

        public override object? Call(List<object?> args, List<(string Name, object? Value)> kwargs, int line)
        {
            if (args.Count > node.Parameters.Count)
                throw new TemplateException(line, $"macro '{node.Name}' takes {node.Parameters.Count} arguments, got {args.Count}");
            if (++evaluator._depth > MaxCallDepth)
                throw new TemplateException(line, $"macro '{node.Name}' recursed more than {MaxCallDepth} calls deep");
            try
            {
                var frame = new Frame(scope);
                for (int i = 0; i < node.Parameters.Count; i++)
                {
                    var (name, fallback) = node.Parameters[i];
                    int k = kwargs.FindIndex(p => p.Name == name);
                    frame.Variables[name] = i < args.Count ? args[i]
                        : k >= 0 ? kwargs[k].Value
                        : fallback is not null ? evaluator.Eval(fallback, frame)
                        : new Undefined(name);
                }
                foreach (var (name, _) in kwargs)
                    if (!node.Parameters.Any(p => p.Name == name))
                        throw new TemplateException(line, $"macro '{node.Name}' has no parameter '{name}'");
                var sb = new StringBuilder();
                evaluator.Exec(node.Body, frame, sb);
                return sb.ToString();
            }
            finally
            {
                evaluator._depth--;
            }
        }
    }

    private readonly Frame _globals = new(null);
    private int _depth;

    public JinjaEvaluator(IReadOnlyDictionary<string, object?> variables)
    {
        _globals.Variables["range"] = new BuiltinFunction("range", Range);
        _globals.Variables["namespace"] = new BuiltinFunction("namespace", (args, kwargs, line) =>
        {
            var ns = new Namespace();
            foreach (var a in args)
            {
                if (a is not OrderedDictionary<string, object?> d) throw new TemplateException(line, "namespace() takes a dict or keyword arguments");
                foreach (var (k, v) in d) ns.Attributes[k] = v;
            }
            foreach (var (k, v) in kwargs) ns.Attributes[k] = v;
            return ns;
        });
        _globals.Variables["dict"] = new BuiltinFunction("dict", (args, kwargs, line) =>
        {
            var d = new OrderedDictionary<string, object?>();
            foreach (var a in args)
            {
                if (a is not OrderedDictionary<string, object?> source) throw new TemplateException(line, "dict() takes a dict or keyword arguments");
                foreach (var (k, v) in source) d[k] = v;
            }
            foreach (var (k, v) in kwargs) d[k] = v;
            return d;
        });
        _globals.Variables["raise_exception"] = new BuiltinFunction("raise_exception", (args, _, line) =>
            throw new TemplateException(line, "the template refused the input: " + (args.Count > 0 ? Py.Str(args[0]) : "")));
        _globals.Variables["strftime_now"] = new BuiltinFunction("strftime_now", (args, _, line) =>
            Strftime.Format(DateTime.Now, args.Count == 1 && args[0] is string f ? f
                : throw new TemplateException(line, "strftime_now() takes one format string")));
        foreach (var (k, v) in variables) _globals.Variables[k] = v;
    }

    public string Render(IReadOnlyList<Node> body)
    {
        var sb = new StringBuilder();
        var flow = Exec(body, new Frame(_globals), sb);
        if (flow != Flow.Normal) throw new TemplateException(1, "{% break %} or {% continue %} outside a loop");
        return sb.ToString();
    }

    private Flow Exec(IReadOnlyList<Node> nodes, Frame frame, StringBuilder sb)
    {
        foreach (var node in nodes)
        {
            var flow = Exec(node, frame, sb);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    private Flow Exec(Node node, Frame frame, StringBuilder sb)
    {
        switch (node)
        {
            case TextNode t:
                sb.Append(t.Text);
                return Flow.Normal;
            case PrintNode p:
                sb.Append(Py.Str(Eval(p.Value, frame)));
                return Flow.Normal;
            case IfNode i:
                foreach (var (test, body) in i.Branches)
                    if (Py.Truthy(Eval(test, frame))) return Exec(body, frame, sb);
                return Exec(i.Else, frame, sb);
            case ForNode f:
                return ExecFor(f, frame, sb);
            case SetNode s:
                ExecSet(s, frame);
                return Flow.Normal;
            case SetBlockNode b:
                var captured = new StringBuilder();
                Exec(b.Body, frame, captured);
                frame.Variables[b.Target] = captured.ToString();
                return Flow.Normal;
            case MacroNode m:
                frame.Variables[m.Name] = new Macro(this, m, frame);
                return Flow.Normal;
            case BreakNode:
                return Flow.Break;
            case ContinueNode:
                return Flow.Continue;
            case ScopeNode scope:
                return Exec(scope.Body, frame, sb);
            case FilterBlockNode fb:
                var text = new StringBuilder();
                var inner = Exec(fb.Body, frame, text);
                sb.Append(Py.Str(ApplyFilter(fb.Filter, text.ToString(), frame)));
                return inner;
            default:
                throw new TemplateException(node.Line, $"cannot run {node.GetType().Name}");
        }
    }

    private Flow ExecFor(ForNode f, Frame frame, StringBuilder sb)
    {
        var items = Py.Iterate(Eval(f.Iterable, frame), f.Line);
        if (f.Filter is not null)
            items = items.Where(item =>
            {
                var probe = new Frame(frame);
                Bind(probe, f.Targets, item, f.Line);
                return Py.Truthy(Eval(f.Filter, probe));
            }).ToList();
        if (items.Count == 0) return Exec(f.Else, new Frame(frame), sb);
        var loop = new LoopInfo(items);
        for (int i = 0; i < items.Count; i++)
        {
            loop.Index0 = i;
            var iteration = new Frame(frame);
            iteration.Variables["loop"] = loop;
            Bind(iteration, f.Targets, items[i], f.Line);
            if (Exec(f.Body, iteration, sb) == Flow.Break) break;
        }
        return Flow.Normal;
    }

    private static void Bind(Frame frame, IReadOnlyList<string> targets, object? value, int line)
    {
        if (targets.Count == 1)
        {
            frame.Variables[targets[0]] = value;
            return;
        }
        var parts = value is string s ? Py.CodePoints(s).Select(c => (object?)c).ToList() : value as List<object?>;
        if (parts is null || parts.Count != targets.Count)
            throw new TemplateException(line, $"cannot unpack {Py.TypeName(value)} into {targets.Count} names ({string.Join(", ", targets)})");
        for (int i = 0; i < targets.Count; i++) frame.Variables[targets[i]] = parts[i];
    }

    private void ExecSet(SetNode s, Frame frame)
    {
        var value = Eval(s.Value, frame);
        if (s.Attribute is null)
        {
            Bind(frame, s.Targets, value, s.Line);
            return;
        }
        if (!frame.TryGet(s.Targets[0], out var target) || target is not Namespace ns)
            throw new TemplateException(s.Line, $"cannot set '{s.Targets[0]}.{s.Attribute}': only attributes of a namespace() can be set");
        ns.Attributes[s.Attribute] = value;
    }

    private object? Eval(Expr e, Frame frame)
    {
        switch (e)
        {
            case LiteralExpr l: return l.Value;
            case NameExpr n: return frame.TryGet(n.Name, out var v) ? v : new Undefined(n.Name);
            case ListExpr l: return l.Items.Select(x => Eval(x, frame)).ToList();
            case DictExpr d:
                var dict = new OrderedDictionary<string, object?>();
                foreach (var (k, val) in d.Items)
                    dict[Eval(k, frame) as string ?? throw new TemplateException(d.Line, "dict keys in templates must be strings")] = Eval(val, frame);
                return dict;
            case AttributeExpr a: return GetAttribute(Eval(a.Target, frame), a.Name, a.Line, Describe(a.Target));
            case ItemExpr i: return GetItem(Eval(i.Target, frame), Eval(i.Key, frame), i.Line, Describe(i.Target));
            case SliceExpr s:
                return Py.Slice(Eval(s.Target, frame), Index(s.Start, frame, s.Line), Index(s.Stop, frame, s.Line),
                    Index(s.Step, frame, s.Line), s.Line);
            case CallExpr c: return EvalCall(c, frame);
            case FilterExpr f: return ApplyFilter(f, f.Value is null ? null : Eval(f.Value, frame), frame);
            case TestExpr t:
                bool result = JinjaFilters.Test(t.Name, Eval(t.Value, frame), t.Args.Select(x => Eval(x, frame)).ToList(), t.Line);
                return result != t.Negated;
            case UnaryExpr u:
                var operand = Eval(u.Operand, frame);
                return u.Op switch
                {
                    "not" => !Py.Truthy(operand),
                    "-" => operand switch
                    {
                        double d => -d,
                        long l => (object)-l,
                        bool b => b ? -1L : 0L,
                        _ => throw new TemplateException(u.Line, $"bad operand for unary -: {Py.TypeName(operand)}"),
                    },
                    _ => Py.IsNumber(operand) ? operand : throw new TemplateException(u.Line, $"bad operand for unary +: {Py.TypeName(operand)}"),
                };
            case BinaryExpr b:
                return b.Op switch
                {
                    "and" => Eval(b.Left, frame) is var l && !Py.Truthy(l) ? l : Eval(b.Right, frame),
                    "or" => Eval(b.Left, frame) is var l2 && Py.Truthy(l2) ? l2 : Eval(b.Right, frame),
                    "~" => Py.Str(Eval(b.Left, frame)) + Py.Str(Eval(b.Right, frame)),
                    _ => Py.Arithmetic(b.Op, Eval(b.Left, frame), Eval(b.Right, frame), b.Line),
                };
            case CompareExpr c:
                var left = Eval(c.First, frame);
                foreach (var (op, rightExpr) in c.Rest)
                {
                    var right = Eval(rightExpr, frame);
                    bool holds = op switch
                    {
                        "==" => Py.Equals(left, right),
                        "!=" => !Py.Equals(left, right),
                        "<" => Py.Compare(left, right, c.Line) < 0,
                        "<=" => Py.Compare(left, right, c.Line) <= 0,
                        ">" => Py.Compare(left, right, c.Line) > 0,
                        ">=" => Py.Compare(left, right, c.Line) >= 0,
                        "in" => Py.Contains(right, left, c.Line),
                        _ => !Py.Contains(right, left, c.Line),
                    };
                    if (!holds) return false;
                    left = right;
                }
                return true;
            case ConditionalExpr c:
                return Py.Truthy(Eval(c.Test, frame)) ? Eval(c.Then, frame)
                    : c.Else is null ? new Undefined("else") : Eval(c.Else, frame);
            default:
                throw new TemplateException(e.Line, $"cannot evaluate {e.GetType().Name}");
        }
    }

    private long? Index(Expr? e, Frame frame, int line) => e is null ? null : Eval(e, frame) switch
    {
        null or Undefined => null,
        long l => l,
        bool b => b ? 1 : 0,
        var other => throw new TemplateException(line, $"slice indices must be integers, not {Py.TypeName(other)}"),
    };

    private object? EvalCall(CallExpr c, Frame frame)
    {
        var callee = Eval(c.Callee, frame);
        var args = c.Args.Select(x => Eval(x, frame)).ToList();
        var kwargs = c.Kwargs.Select(k => (k.Name, Eval(k.Value, frame))).ToList();
        return callee switch
        {
            Callable f => f.Call(args, kwargs, c.Line),
            Undefined u => throw new TemplateException(c.Line,
                $"'{u.Name}' is undefined, so it cannot be called (apb's chat template interpreter provides range, " +
                "namespace, dict, raise_exception and strftime_now, and the str and dict methods templates use)"),
            _ => throw new TemplateException(c.Line, $"'{Py.TypeName(callee)}' object is not callable"),
        };
    }

    private object? ApplyFilter(FilterExpr f, object? value, Frame frame) =>
        JinjaFilters.Apply(f.Name, value, f.Args.Select(x => Eval(x, frame)).ToList(),
            f.Kwargs.Select(k => (k.Name, Eval(k.Value, frame))).ToList(), f.Line);

    private static string Describe(Expr e) => e switch
    {
        NameExpr n => n.Name,
        AttributeExpr a => Describe(a.Target) + "." + a.Name,
        ItemExpr { Key: LiteralExpr l } i => $"{Describe(i.Target)}[{Py.Repr(l.Value)}]",
        ItemExpr i => Describe(i.Target) + "[...]",
        _ => "the value",
    };

    private static readonly HashSet<string> Mutators =
        ["append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse", "update", "setdefault", "popitem"];

    /// <summary>value.name: a method of value's type, else its item or attribute of that name, else Undefined.</summary>
    public static object? GetAttribute(object? value, string name, int line, string what = "the value")
    {
        if (value is Undefined u) throw new TemplateException(line, $"'{u.Name}' is undefined, so it has no attribute '{name}'");
        if (JinjaMethods.Find(value, name) is { } method) return method;
        if (value is List<object?> or OrderedDictionary<string, object?> && Mutators.Contains(name))
            throw new TemplateException(line, $"{what}.{name}() would change a {Py.TypeName(value)}; chat templates cannot " +
                                              "(transformers' sandbox refuses it too); use namespace() and + instead");
        return value switch
        {
            OrderedDictionary<string, object?> d => d.TryGetValue(name, out var v) ? v : new Undefined($"{what}.{name}"),
            Namespace ns => ns.Attributes.TryGetValue(name, out var v) ? v : new Undefined($"{what}.{name}"),
            LoopInfo loop => loop.Get(name),
            _ => new Undefined($"{what}.{name}"),
        };
    }

    /// <summary>value[key]: the item first (list index, dict key), then a method of that name, else Undefined.</summary>
    public static object? GetItem(object? value, object? key, int line, string what = "the value")
    {
        if (value is Undefined u) throw new TemplateException(line, $"'{u.Name}' is undefined, so it has no item {Py.Repr(key)}");
        switch (value)
        {
            case List<object?> or string when key is long or bool:
                return Py.Index(value, key is bool b ? (b ? 1 : 0) : (long)key, $"{what}[{Py.Repr(key)}]");
            case OrderedDictionary<string, object?> d when key is string k && d.TryGetValue(k, out var v):
                return v;
            case Namespace ns when key is string k && ns.Attributes.TryGetValue(k, out var v):
                return v;
            case LoopInfo loop when key is string k:
                return loop.Get(k);
        }
        return key is string name && JinjaMethods.Find(value, name) is { } method ? method : new Undefined($"{what}[{Py.Repr(key)}]");
    }

    private static object? Range(List<object?> args, List<(string Name, object? Value)> kwargs, int line)
    {
        if (kwargs.Count > 0 || args.Count is 0 or > 3 || args.Any(a => a is not long))
            throw new TemplateException(line, "range() takes one to three integers");
        long start = args.Count == 1 ? 0 : (long)args[0]!, stop = args.Count == 1 ? (long)args[0]! : (long)args[1]!;
        long step = args.Count == 3 ? (long)args[2]! : 1;
        if (step == 0) throw new TemplateException(line, "range() step must not be zero");
        var result = new List<object?>();
        for (long i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            if (result.Count >= MaxRange) throw new TemplateException(line, $"range() longer than {MaxRange} items");
            result.Add(i);
        }
        return result;
    }
}
