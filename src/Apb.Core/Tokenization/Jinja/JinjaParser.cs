using System.Globalization;

namespace Apb.Tokenization.Jinja;

/// <summary>
/// Jinja's grammar for the subset chat templates use, with its operator precedence (lowest first): a if b else c; or;
/// and; not; comparisons and in; + -; ~; * / // %; **; unary - +; then literals, names, .attr, [key], [a:b:c], calls,
/// | filters and "is" tests. Tags: if/elif/else, for (with loop filter and else), set (also block set and ns.attr),
/// macro, filter, break, continue, generation. Anything else fails here, naming the construct and its line.
/// </summary>
internal sealed class JinjaParser
{
    private const string SupportedTags = "if, for, set, macro, filter, break, continue and generation";

    private readonly List<Token> _tokens;
    private int _i;

    private JinjaParser(List<Token> tokens) => _tokens = tokens;

    public static IReadOnlyList<Node> Parse(string source)
    {
        var parser = new JinjaParser(JinjaLexer.Tokenize(source));
        var body = parser.ParseBody(null, 0);
        return body;
    }

    private Token Current => _i < _tokens.Count ? _tokens[_i] : new Token(TokenKind.End, "", _tokens.Count > 0 ? _tokens[^1].Line : 1);

    private Token Peek(int ahead) => _i + ahead < _tokens.Count ? _tokens[_i + ahead] : new Token(TokenKind.End, "", Current.Line);

    private Token Next() => _tokens[_i++];

    private TemplateException Error(string problem) => new(Current.Line, problem);

    private void Expect(TokenKind kind, string value = "")
    {
        var t = Current;
        if (t.Kind != kind || (value.Length > 0 && t.Value != value))
        {
            string wanted = kind switch
            {
                TokenKind.BlockEnd => "'%}'",
                TokenKind.VariableEnd => "'}}'",
                TokenKind.Name when value.Length == 0 => "a name",
                _ => $"'{value}'",
            };
            throw Error($"expected {wanted}, found {t}");
        }
        _i++;
    }

    private string ExpectName()
    {
        if (Current.Kind != TokenKind.Name) throw Error($"expected a name, found {Current}");
        return Next().Value;
    }

    // Nodes up to a {% tag %} named in endTags (left unconsumed), or to the end of the template when endTags is null.
    private List<Node> ParseBody(string[]? endTags, int openedAt, string? opener = null)
    {
        var nodes = new List<Node>();
        while (true)
        {
            var t = Current;
            switch (t.Kind)
            {
                case TokenKind.End:
                    if (endTags is not null)
                        throw new TemplateException(openedAt,
                            $"the '{opener}' block opened here is never closed: expected {{% {string.Join(" or ", endTags)} %}}");
                    return nodes;
                case TokenKind.Text:
                    nodes.Add(new TextNode(t.Line, Next().Value));
                    break;
                case TokenKind.VariableBegin:
                    Next();
                    var value = ParseExpression();
                    Expect(TokenKind.VariableEnd);
                    nodes.Add(new PrintNode(t.Line, value));
                    break;
                case TokenKind.BlockBegin:
                    var name = Peek(1);
                    if (endTags is not null && name.Kind == TokenKind.Name && endTags.Contains(name.Value)) return nodes;
                    Next();
                    nodes.Add(ParseStatement());
                    break;
                default:
                    throw Error($"unexpected {t}");
            }
        }
    }

    // After {% : the tag name and the rest of the statement, through its end tag.
    private Node ParseStatement()
    {
        var tag = Current;
        if (tag.Kind != TokenKind.Name) throw Error($"expected a tag name after '{{%', found {tag}");
        Next();
        switch (tag.Value)
        {
            case "if": return ParseIf(tag.Line);
            case "for": return ParseFor(tag.Line);
            case "set": return ParseSet(tag.Line);
            case "macro": return ParseMacro(tag.Line);
            case "break":
                Expect(TokenKind.BlockEnd);
                return new BreakNode(tag.Line);
            case "continue":
                Expect(TokenKind.BlockEnd);
                return new ContinueNode(tag.Line);
            case "generation":
                Expect(TokenKind.BlockEnd);
                var body = ParseBody(["endgeneration"], tag.Line, "generation");
                EndTag("endgeneration");
                return new ScopeNode(tag.Line, body);
            case "filter":
                var filter = ParseFilter(null, tag.Line);
                Expect(TokenKind.BlockEnd);
                var filtered = ParseBody(["endfilter"], tag.Line, "filter");
                EndTag("endfilter");
                return new FilterBlockNode(tag.Line, filter, filtered);
            case "elif" or "else" or "endif" or "endfor" or "endset" or "endmacro" or "endfilter" or "endgeneration":
                throw new TemplateException(tag.Line, $"'{{% {tag.Value} %}}' without the block it would close or continue");
            default:
                throw new TemplateException(tag.Line,
                    $"the '{{% {tag.Value} %}}' tag is not supported by apb's chat template interpreter (it supports {SupportedTags})");
        }
    }

    private void EndTag(string name)
    {
        Expect(TokenKind.BlockBegin);
        Expect(TokenKind.Name, name);
        Expect(TokenKind.BlockEnd);
    }

    private Node ParseIf(int line)
    {
        var branches = new List<(Expr, IReadOnlyList<Node>)>();
        var test = ParseExpression();
        Expect(TokenKind.BlockEnd);
        IReadOnlyList<Node> elseBody = [];
        while (true)
        {
            branches.Add((test, ParseBody(["elif", "else", "endif"], line, "if")));
            Next(); // {%
            string which = Next().Value;
            if (which == "elif")
            {
                test = ParseExpression();
                Expect(TokenKind.BlockEnd);
                continue;
            }
            Expect(TokenKind.BlockEnd);
            if (which == "else")
            {
                elseBody = ParseBody(["endif"], line, "if");
                EndTag("endif");
            }
            return new IfNode(line, branches, elseBody);
        }
    }

    private Node ParseFor(int line)
    {
        var targets = new List<string> { ExpectName() };
        while (Current.IsOperator(","))
        {
            Next();
            targets.Add(ExpectName());
        }
        Expect(TokenKind.Name, "in");
        var iterable = ParseOr(); // no conditional: "if" here filters the loop
        Expr? filter = null;
        if (Current.IsName("if"))
        {
            Next();
            filter = ParseOr();
        }
        if (Current.IsName("recursive")) throw Error("recursive loops are not supported by apb's chat template interpreter");
        Expect(TokenKind.BlockEnd);
        var body = ParseBody(["else", "endfor"], line, "for");
        IReadOnlyList<Node> elseBody = [];
        if (Peek(1).IsName("else"))
        {
            Next();
            Next();
            Expect(TokenKind.BlockEnd);
            elseBody = ParseBody(["endfor"], line, "for");
        }
        EndTag("endfor");
        return new ForNode(line, targets, iterable, filter, body, elseBody);
    }

    private Node ParseSet(int line)
    {
        var targets = new List<string> { ExpectName() };
        string? attribute = null;
        if (Current.IsOperator("."))
        {
            Next();
            attribute = ExpectName();
        }
        else
            while (Current.IsOperator(","))
            {
                Next();
                targets.Add(ExpectName());
            }
        if (Current.Kind == TokenKind.BlockEnd && attribute is null && targets.Count == 1)
        {
            Next();
            var body = ParseBody(["endset"], line, "set");
            EndTag("endset");
            return new SetBlockNode(line, targets[0], body);
        }
        Expect(TokenKind.Operator, "=");
        var value = ParseExpression();
        Expect(TokenKind.BlockEnd);
        return new SetNode(line, targets, attribute, value);
    }

    private Node ParseMacro(int line)
    {
        string name = ExpectName();
        Expect(TokenKind.Operator, "(");
        var parameters = new List<(string, Expr?)>();
        while (!Current.IsOperator(")"))
        {
            string p = ExpectName();
            Expr? fallback = null;
            if (Current.IsOperator("="))
            {
                Next();
                fallback = ParseExpression();
            }
            parameters.Add((p, fallback));
            if (!Current.IsOperator(",")) break;
            Next();
        }
        Expect(TokenKind.Operator, ")");
        Expect(TokenKind.BlockEnd);
        var body = ParseBody(["endmacro"], line, "macro");
        EndTag("endmacro");
        return new MacroNode(line, name, parameters, body);
    }

    public Expr ParseExpression()
    {
        var value = ParseOr();
        if (!Current.IsName("if")) return value;
        int line = Next().Line;
        var test = ParseOr();
        Expr? otherwise = null;
        if (Current.IsName("else"))
        {
            Next();
            otherwise = ParseExpression();
        }
        return new ConditionalExpr(line, test, value, otherwise);
    }

    private Expr ParseOr() => LeftAssociative(ParseAnd, t => t.IsName("or"));

    private Expr ParseAnd() => LeftAssociative(ParseNot, t => t.IsName("and"));

    private Expr ParseNot() =>
        Current.IsName("not") ? new UnaryExpr(Next().Line, "not", ParseNot()) : ParseCompare();

    private Expr ParseCompare()
    {
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            var t = Current;
            if (t.Kind == TokenKind.Operator && t.Value is "==" or "!=" or "<" or "<=" or ">" or ">=")
            {
                Next();
                rest.Add((t.Value, ParseMath1()));
            }
            else if (t.IsName("in"))
            {
                Next();
                rest.Add(("in", ParseMath1()));
            }
            else if (t.IsName("not") && Peek(1).IsName("in"))
            {
                _i += 2;
                rest.Add(("not in", ParseMath1()));
            }
            else break;
        }
        return rest.Count == 0 ? first : new CompareExpr(first.Line, first, rest);
    }

    private Expr ParseMath1() => LeftAssociative(ParseConcat, t => t.Kind == TokenKind.Operator && t.Value is "+" or "-");

    private Expr ParseConcat() => LeftAssociative(ParseMath2, t => t.IsOperator("~"));

    private Expr ParseMath2() =>
        LeftAssociative(ParsePow, t => t.Kind == TokenKind.Operator && t.Value is "*" or "/" or "//" or "%");

    // Jinja's ** groups to the left, unlike Python's.
    private Expr ParsePow() => LeftAssociative(() => ParseUnary(withFilter: true), t => t.IsOperator("**"));

    private Expr LeftAssociative(Func<Expr> operand, Func<Token, bool> isOperator)
    {
        var left = operand();
        while (isOperator(Current))
        {
            var op = Next();
            left = new BinaryExpr(op.Line, op.Value, left, operand());
        }
        return left;
    }

    private Expr ParseUnary(bool withFilter)
    {
        Expr node;
        if (Current.Kind == TokenKind.Operator && Current.Value is "-" or "+")
        {
            var op = Next();
            node = new UnaryExpr(op.Line, op.Value, ParseUnary(withFilter: false));
        }
        else node = ParsePrimary();
        node = ParsePostfix(node);
        return withFilter ? ParseFilterAndTests(node) : node;
    }

    private Expr ParsePrimary()
    {
        var t = Current;
        switch (t.Kind)
        {
            case TokenKind.Name:
                Next();
                return t.Value switch
                {
                    "true" or "True" => new LiteralExpr(t.Line, true),
                    "false" or "False" => new LiteralExpr(t.Line, false),
                    "none" or "None" => new LiteralExpr(t.Line, null),
                    _ => new NameExpr(t.Line, t.Value),
                };
            case TokenKind.String:
                string s = Next().Value;
                while (Current.Kind == TokenKind.String) s += Next().Value; // adjacent literals concatenate
                return new LiteralExpr(t.Line, s);
            case TokenKind.Integer:
                Next();
                return new LiteralExpr(t.Line, long.TryParse(t.Value, CultureInfo.InvariantCulture, out long l)
                    ? l : throw new TemplateException(t.Line, $"the integer {t.Value} is too large"));
            case TokenKind.Float:
                Next();
                return new LiteralExpr(t.Line, double.Parse(t.Value, CultureInfo.InvariantCulture));
            case TokenKind.Operator when t.Value == "(":
                Next();
                if (Current.IsOperator(")"))
                {
                    Next();
                    return new ListExpr(t.Line, []);
                }
                var inner = ParseExpression();
                if (Current.IsOperator(","))
                {
                    var items = new List<Expr> { inner };
                    while (Current.IsOperator(","))
                    {
                        Next();
                        if (Current.IsOperator(")")) break;
                        items.Add(ParseExpression());
                    }
                    inner = new ListExpr(t.Line, items); // a tuple; read-only use makes it a list here
                }
                Expect(TokenKind.Operator, ")");
                return inner;
            case TokenKind.Operator when t.Value == "[":
                Next();
                var list = new List<Expr>();
                while (!Current.IsOperator("]"))
                {
                    list.Add(ParseExpression());
                    if (!Current.IsOperator(",")) break;
                    Next();
                }
                Expect(TokenKind.Operator, "]");
                return new ListExpr(t.Line, list);
            case TokenKind.Operator when t.Value == "{":
                Next();
                var pairs = new List<(Expr, Expr)>();
                while (!Current.IsOperator("}"))
                {
                    var key = ParseExpression();
                    Expect(TokenKind.Operator, ":");
                    pairs.Add((key, ParseExpression()));
                    if (!Current.IsOperator(",")) break;
                    Next();
                }
                Expect(TokenKind.Operator, "}");
                return new DictExpr(t.Line, pairs);
            default:
                throw Error($"expected a value, found {t}");
        }
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            var t = Current;
            if (t.IsOperator("."))
            {
                Next();
                if (Current.Kind == TokenKind.Integer)
                    node = new ItemExpr(t.Line, node, new LiteralExpr(t.Line, long.Parse(Next().Value, CultureInfo.InvariantCulture)));
                else node = new AttributeExpr(t.Line, node, ExpectName());
            }
            else if (t.IsOperator("[")) node = ParseSubscript(node);
            else if (t.IsOperator("(")) node = ParseCall(node);
            else return node;
        }
    }

    private Expr ParseSubscript(Expr target)
    {
        int line = Next().Line;
        Expr? start = null, stop = null, step = null;
        bool slice = false;
        if (!Current.IsOperator(":")) start = ParseExpression();
        if (Current.IsOperator(":"))
        {
            slice = true;
            Next();
            if (!Current.IsOperator(":") && !Current.IsOperator("]")) stop = ParseExpression();
            if (Current.IsOperator(":"))
            {
                Next();
                if (!Current.IsOperator("]")) step = ParseExpression();
            }
        }
        Expect(TokenKind.Operator, "]");
        return slice ? new SliceExpr(line, target, start, stop, step)
            : new ItemExpr(line, target, start ?? throw new TemplateException(line, "empty subscript []"));
    }

    private CallExpr ParseCall(Expr callee)
    {
        int line = Current.Line;
        var (args, kwargs) = ParseArguments();
        return new CallExpr(line, callee, args, kwargs);
    }

    private (List<Expr> Args, List<(string, Expr)> Kwargs) ParseArguments()
    {
        Expect(TokenKind.Operator, "(");
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        while (!Current.IsOperator(")"))
        {
            if (Current.Kind == TokenKind.Operator && Current.Value is "*" or "**")
                throw Error("*args and **kwargs in calls are not supported by apb's chat template interpreter");
            if (Current.Kind == TokenKind.Name && Peek(1).IsOperator("="))
            {
                string name = Next().Value;
                Next();
                kwargs.Add((name, ParseExpression()));
            }
            else
            {
                if (kwargs.Count > 0) throw Error("a positional argument after a keyword argument");
                args.Add(ParseExpression());
            }
            if (!Current.IsOperator(",")) break;
            Next();
        }
        Expect(TokenKind.Operator, ")");
        return (args, kwargs);
    }

    private Expr ParseFilterAndTests(Expr node)
    {
        while (true)
        {
            var t = Current;
            if (t.IsOperator("|"))
            {
                Next();
                node = ParseFilter(node, t.Line);
            }
            else if (t.IsName("is")) node = ParseTest(node);
            else if (t.IsOperator("(")) node = ParseCall(node);
            else return node;
        }
    }

    private FilterExpr ParseFilter(Expr? value, int line)
    {
        string name = ExpectName();
        while (Current.IsOperator(".")) // dotted filter names do not exist in the subset, but say so clearly
        {
            Next();
            name += "." + ExpectName();
        }
        if (!JinjaFilters.IsFilter(name))
            throw new TemplateException(line, $"the filter '{name}' is not supported by apb's chat template interpreter " +
                                              $"(supported: {string.Join(", ", JinjaFilters.FilterNames)})");
        if (!Current.IsOperator("(")) return new FilterExpr(line, value, name, [], []);
        var (args, kwargs) = ParseArguments();
        return new FilterExpr(line, value, name, args, kwargs);
    }

    private Expr ParseTest(Expr value)
    {
        int line = Next().Line; // "is"
        bool negated = false;
        if (Current.IsName("not"))
        {
            Next();
            negated = true;
        }
        string name = Current.Kind == TokenKind.Name ? Next().Value
            : Current.Kind == TokenKind.Operator && Current.Value is "==" or "!=" or "<" or "<=" or ">" or ">=" ? Next().Value
            : throw Error($"expected a test name after 'is', found {Current}");
        if (!JinjaFilters.IsTest(name))
            throw new TemplateException(line, $"the test '{name}' is not supported by apb's chat template interpreter " +
                                              $"(supported: {string.Join(", ", JinjaFilters.TestNames)})");
        var args = new List<Expr>();
        var t = Current;
        if (t.IsOperator("("))
        {
            var (a, kwargs) = ParseArguments();
            if (kwargs.Count > 0) throw new TemplateException(line, $"the test '{name}' takes no keyword arguments");
            args = a;
        }
        else if ((t.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float
                  || (t.Kind == TokenKind.Operator && t.Value is "[" or "{"))
                 && !(t.Kind == TokenKind.Name && t.Value is "else" or "or" or "and" or "is"))
            args.Add(ParsePostfix(ParsePrimary()));
        return new TestExpr(line, value, name, args, negated);
    }
}
