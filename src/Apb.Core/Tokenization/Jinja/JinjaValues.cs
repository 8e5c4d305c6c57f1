namespace Apb.Tokenization.Jinja;

// Template values are plain .NET objects standing for Python's: null (None), bool, long (int), double (float),
// string, List<object?> (list and tuple), OrderedDictionary<string, object?> (dict, insertion-ordered as Python's),
// and the types below.

/// <summary>Jinja's default Undefined: prints as "", is falsy, iterates as empty; reading an attribute of it fails.</summary>
internal sealed class Undefined(string name)
{
    public string Name => name;
    public override string ToString() => "";
}

/// <summary>namespace(): the one mutable object a template has ({% set ns.x = ... %} works across loop scopes).</summary>
internal sealed class Namespace
{
    public OrderedDictionary<string, object?> Attributes { get; } = new();
}

/// <summary>Anything a template can call: macros, globals such as range() and raise_exception(), bound methods.</summary>
internal abstract class Callable
{
    public abstract string Name { get; }
    public abstract object? Call(List<object?> args, List<(string Name, object? Value)> kwargs, int line);
}

internal sealed class BuiltinFunction(string name, Func<List<object?>, List<(string Name, object? Value)>, int, object?> body) : Callable
{
    public override string Name => name;
    public override object? Call(List<object?> args, List<(string Name, object? Value)> kwargs, int line) => body(args, kwargs, line);
}

/// <summary>A method of a string, dict or loop object, bound to its receiver (message.content.strip).</summary>
internal sealed class BoundMethod(object receiver, string name) : Callable
{
    public object Receiver => receiver;
    public override string Name => name;
    public override object? Call(List<object?> args, List<(string Name, object? Value)> kwargs, int line) =>
        JinjaMethods.Call(receiver, name, args, kwargs, line);
}

/// <summary>The loop variable inside {% for %}.</summary>
internal sealed class LoopInfo(IReadOnlyList<object?> items)
{
    public int Index0 { get; set; }
    public IReadOnlyList<object?> Items => items;

    public object? Get(string name) => name switch
    {
        "index" => (long)Index0 + 1,
        "index0" => (long)Index0,
        "revindex" => (long)(items.Count - Index0),
        "revindex0" => (long)(items.Count - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == items.Count - 1,
        "length" => (long)items.Count,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? items[Index0 - 1] : new Undefined("loop.previtem"),
        "nextitem" => Index0 + 1 < items.Count ? items[Index0 + 1] : new Undefined("loop.nextitem"),
        "cycle" => new BoundMethod(this, "cycle"),
        _ => new Undefined("loop." + name),
    };
}
