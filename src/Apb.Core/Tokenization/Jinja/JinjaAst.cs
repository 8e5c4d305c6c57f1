namespace Apb.Tokenization.Jinja;

// Statements. Every node keeps its template line for error messages.
internal abstract record Node(int Line);
internal sealed record TextNode(int Line, string Text) : Node(Line);
internal sealed record PrintNode(int Line, Expr Value) : Node(Line);
internal sealed record IfNode(int Line, IReadOnlyList<(Expr Test, IReadOnlyList<Node> Body)> Branches, IReadOnlyList<Node> Else) : Node(Line);
internal sealed record ForNode(int Line, IReadOnlyList<string> Targets, Expr Iterable, Expr? Filter, IReadOnlyList<Node> Body,
    IReadOnlyList<Node> Else) : Node(Line);
/// <summary>{% set a = x %}, {% set a, b = x %}, {% set ns.attr = x %} (Attribute non-null).</summary>
internal sealed record SetNode(int Line, IReadOnlyList<string> Targets, string? Attribute, Expr Value) : Node(Line);
/// <summary>{% set name %}...{% endset %}</summary>
internal sealed record SetBlockNode(int Line, string Target, IReadOnlyList<Node> Body) : Node(Line);
internal sealed record MacroNode(int Line, string Name, IReadOnlyList<(string Name, Expr? Default)> Parameters,
    IReadOnlyList<Node> Body) : Node(Line);
internal sealed record BreakNode(int Line) : Node(Line);
internal sealed record ContinueNode(int Line) : Node(Line);
/// <summary>A block rendered as it stands (transformers' {% generation %} marks assistant text for masks only).</summary>
internal sealed record ScopeNode(int Line, IReadOnlyList<Node> Body) : Node(Line);
/// <summary>{% filter name(args) %}...{% endfilter %}</summary>
internal sealed record FilterBlockNode(int Line, FilterExpr Filter, IReadOnlyList<Node> Body) : Node(Line);

// Expressions.
internal abstract record Expr(int Line);
internal sealed record LiteralExpr(int Line, object? Value) : Expr(Line);
internal sealed record NameExpr(int Line, string Name) : Expr(Line);
internal sealed record ListExpr(int Line, IReadOnlyList<Expr> Items) : Expr(Line);
internal sealed record DictExpr(int Line, IReadOnlyList<(Expr Key, Expr Value)> Items) : Expr(Line);
internal sealed record AttributeExpr(int Line, Expr Target, string Name) : Expr(Line);
internal sealed record ItemExpr(int Line, Expr Target, Expr Key) : Expr(Line);
internal sealed record SliceExpr(int Line, Expr Target, Expr? Start, Expr? Stop, Expr? Step) : Expr(Line);
internal sealed record CallExpr(int Line, Expr Callee, IReadOnlyList<Expr> Args, IReadOnlyList<(string Name, Expr Value)> Kwargs) : Expr(Line);
/// <summary>value | name(args); Value is null inside a {% filter %} block, where the block's text is the input.</summary>
internal sealed record FilterExpr(int Line, Expr? Value, string Name, IReadOnlyList<Expr> Args,
    IReadOnlyList<(string Name, Expr Value)> Kwargs) : Expr(Line);
internal sealed record TestExpr(int Line, Expr Value, string Name, IReadOnlyList<Expr> Args, bool Negated) : Expr(Line);
internal sealed record UnaryExpr(int Line, string Op, Expr Operand) : Expr(Line);
internal sealed record BinaryExpr(int Line, string Op, Expr Left, Expr Right) : Expr(Line);
/// <summary>a &lt; b &lt;= c: each operator compares its neighbours, all must hold.</summary>
internal sealed record CompareExpr(int Line, Expr First, IReadOnlyList<(string Op, Expr Right)> Rest) : Expr(Line);
internal sealed record ConditionalExpr(int Line, Expr Test, Expr Then, Expr? Else) : Expr(Line);
