using Apb.Tokenization.Jinja;
using Xunit;

namespace Apb.Tests.Tokenization;

/// <summary>
/// The template interpreter on small templates whose output Jinja's documentation and Python's semantics fix
/// (transformers' environment: trim_blocks, lstrip_blocks, no trailing newline kept).
/// </summary>
public class JinjaTests
{
    private static string Render(string template, params (string Name, object? Value)[] variables) =>
        JinjaTemplate.Parse(template).Render(variables.ToDictionary(v => v.Name, v => v.Value));

    private static List<object?> L(params object?[] items) => items.ToList();

    private static OrderedDictionary<string, object?> D(params (string Key, object? Value)[] items)
    {
        var d = new OrderedDictionary<string, object?>();
        foreach (var (k, v) in items) d[k] = v;
        return d;
    }

    [Theory]
    [InlineData("{% if true %}\n  yes\n{% endif %}\n", "  yes\n")]           // trim_blocks + lstrip_blocks
    [InlineData("a\n    {% if true %}b{% endif %}\nc", "a\nbc")]            // indentation before a block tag goes
    [InlineData("a  {{- ' b ' -}}  c", "a b c")]                              // "-" strips every whitespace on its side
    [InlineData("a \n {%- if true -%} \n b {%- endif %}", "ab")]
    [InlineData("x {# a comment #}\ny", "x y")]                               // trim_blocks after a comment too
    [InlineData("{{ 'a' }}\n{{ 'b' }}\n", "a\nb")]                            // variable tags keep their newline; one trailing newline is dropped
    [InlineData("  {%+ if true %}x{% endif +%}\ny", "  x\ny")]               // "+" keeps what lstrip/trim would remove
    [InlineData("a\r\nb", "a\nb")]
    public void WhitespaceControlFollowsTransformersEnvironment(string template, string expected) =>
        Assert.Equal(expected, Render(template));

    [Fact]
    public void ExpressionsFollowPython()
    {
        Assert.Equal("7", Render("{{ 1 + 2 * 3 }}"));
        Assert.Equal("2.5 2 -3 1 8", Render("{{ 5 / 2 }} {{ 5 // 2 }} {{ -5 // 2 }} {{ -5 % 3 }} {{ 2 ** 3 }}"));
        Assert.Equal("ab3", Render("{{ 'a' ~ 'b' ~ 3 }}"));
        Assert.Equal("True False None", Render("{{ true }} {{ 1 == 2 }} {{ none }}"));
        Assert.Equal("True True True", Render("{{ 1 == 1.0 }} {{ 'b' in 'abc' }} {{ 2 not in [1, 3] }}"));
        Assert.Equal("yes", Render("{{ 'yes' if x is not defined else 'no' }}"));
        Assert.Equal("", Render("{{ 'yes' if false }}"));
        Assert.Equal("b", Render("{{ none or 'b' }}"));
        Assert.Equal("[1, 'a', None]", Render("{{ [1, 'a', none] }}"));
        Assert.Equal("{'k': [1, 2]}", Render("{{ {'k': [1, 2]} }}"));
        Assert.Equal("1.0 0.1 1e+16 1e-05 0.0001", Render("{{ 1.0 }} {{ 0.1 }} {{ 1e16 }} {{ 0.00001 }} {{ 0.0001 }}"));
        Assert.Equal("True", Render("{{ 1 < 2 < 3 }}"));
        Assert.Equal("ab", Render("{{ 'a' 'b' }}"));
    }

    [Fact]
    public void JsonValuesKeepPythonsTypes()
    {
        // json.loads gives int for 7 and float for 2.5; arithmetic, printing and tests follow the type.
        var values = System.Text.Json.JsonDocument.Parse("""{"n": 7, "f": 2.5, "l": [3, 1, 2]}""").RootElement;
        var vars = values.EnumerateObject().Select(p => (p.Name, JinjaTemplate.FromJson(p.Value))).ToArray();
        Assert.Equal("3 -4 49 True 3.5 6 [1, 2, 3] 7", Render(
            "{{ n // 2 }} {{ -n // 2 }} {{ n ** 2 }} {{ n is integer }} {{ n / 2 }} {{ l | sum }} {{ l | sort }} {{ -n | abs }}", vars));
        Assert.Equal("-0.0 2.0 -2.0 3.14", Render("{{ -0.0 }} {{ 2.5 | round }} {{ -2.5 | round }} {{ 3.14159 | round(2) }}"));
        Assert.Equal("['x', 'y  '] ['  x', 'y']", Render("{{ '  x  y  '.split(None, 1) }} {{ '  x  y  '.rsplit(None, 1) }}"));
    }

    [Fact]
    public void SlicesAndIndicesAreByCodePoint()
    {
        var items = L(1L, 2L, 3L, 4L);
        Assert.Equal("[4, 3, 2, 1]", Render("{{ x[::-1] }}", ("x", items)));
        Assert.Equal("[2, 3] [1, 3] 4 [3, 4]", Render("{{ x[1:3] }} {{ x[::2] }} {{ x[-1] }} {{ x[-2:] }}", ("x", items)));
        Assert.Equal("b 2 b😀 😀", Render("{{ s[1] }} {{ s | length }} {{ s[::-1] }} {{ s[:1] }}", ("s", "😀b")));
        Assert.Equal("", Render("{{ x[10] }}", ("x", items)));
    }

    [Fact]
    public void LoopsHaveLoopVariablesAndTheirOwnScope()
    {
        Assert.Equal("1/3 first;2/3;3/3 last;",
            Render("{% for x in xs %}{{ loop.index }}/{{ loop.length }}{% if loop.first %} first{% endif %}{% if loop.last %} last{% endif %};{% endfor %}",
                ("xs", L("a", "b", "c"))));
        // A set inside a loop does not leak out; namespace() does.
        Assert.Equal("0 2", Render("{% set n = 0 %}{% set ns = namespace(n=0) %}{% for x in [1, 2] %}{% set n = n + 1 %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ n }} {{ ns.n }}"));
        Assert.Equal("empty", Render("{% for x in [] %}{{ x }}{% else %}empty{% endfor %}"));
        Assert.Equal("13", Render("{% for x in [1, 2, 3, 4] if x is odd %}{{ x }}{% endfor %}"));
        Assert.Equal("12", Render("{% for x in [1, 2, 3] %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}"));
        Assert.Equal("13", Render("{% for x in [1, 2, 3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}"));
        Assert.Equal("a=1,b=2,", Render("{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}", ("d", D(("a", 1L), ("b", 2L)))));
        Assert.Equal("ab", Render("{% for k in d %}{{ k }}{% endfor %}", ("d", D(("a", 1L), ("b", 2L)))));
        Assert.Equal("xx-y", Render("{% for x in xs %}{{ loop.previtem ~ '-' if not loop.first }}{{ x }}{% endfor %}", ("xs", L("x", "y"))));
    }

    [Fact]
    public void MacrosSetBlocksAndFilterBlocks()
    {
        Assert.Equal("<a|b><c|d>", Render("{% macro pair(x, y='d') %}<{{ x }}|{{ y }}>{% endmacro %}{{ pair('a', 'b') }}{{ pair(x='c') }}"));
        Assert.Equal("HI THERE", Render("{% set s %}hi {{ 'there' }}{% endset %}{{ s | upper }}"));
        Assert.Equal("ABC", Render("{% filter upper %}abc{% endfilter %}"));
    }

    [Fact]
    public void FiltersBehaveAsJinjas()
    {
        Assert.Equal("x", Render("{{ '  x \n' | trim }}"));
        Assert.Equal("3 2 0", Render("{{ [1, 2, 3] | length }} {{ {'a': 1, 'b': 2} | length }} {{ missing | length }}"));
        Assert.Equal("d  None", Render("{{ missing | default('d') }} {{ '' | default('d') }} {{ none | default('d') }}"));
        Assert.Equal("d", Render("{{ '' | default('d', true) }}"));
        Assert.Equal("1 3 ", Render("{{ [1, 2, 3] | first }} {{ [1, 2, 3] | last }} {{ [] | first }}"));
        Assert.Equal("a, b, None", Render("{{ ['a', 'b', none] | join(', ') }}"));
        Assert.Equal("ABC abc Hello World-Wide", Render("{{ 'abc' | upper }} {{ 'ABC' | lower }} {{ 'hello world-wide' | title }}"));
        Assert.Equal("a-b-c", Render("{{ 'a b c' | replace(' ', '-') }}"));
        Assert.Equal("42 0 7", Render("{{ '42' | int }} {{ 'x' | int }} {{ 7.9 | int }}"));
        Assert.Equal("['a', 'b']", Render("{{ 'ab' | list }}"));
        Assert.Equal("2", Render("{{ msgs | selectattr('role', 'equalto', 'user') | list | length }}",
            ("msgs", L(D(("role", "user")), D(("role", "assistant")), D(("role", "user"))))));
        Assert.Equal("user,assistant", Render("{{ msgs | map(attribute='role') | join(',') }}",
            ("msgs", L(D(("role", "user")), D(("role", "assistant"))))));
        Assert.Equal("1", Render("{{ msgs | rejectattr('tool_calls') | list | length }}",
            ("msgs", L(D(("role", "user")), D(("role", "assistant"), ("tool_calls", L(1L)))))));
        Assert.Equal("A,B", Render("{{ ['a', 'b'] | map('upper') | join(',') }}"));
        Assert.Equal("[2, 1]", Render("{{ [1, 2] | reverse | list }}"));
        Assert.Equal("a\n    b\n\n    c", Render("{{ 'a\nb\n\nc' | indent(4) }}"));
    }

    [Fact]
    public void ToJsonWritesAsPythonsJsonDumps()
    {
        var tool = D(("name", "get_weather"), ("parameters", D(("city", "Zürich"), ("days", 3L), ("ok", true), ("x", null), ("f", 1.5))));
        Assert.Equal("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Zürich\", \"days\": 3, \"ok\": true, \"x\": null, \"f\": 1.5}}",
            Render("{{ t | tojson }}", ("t", tool)));
        Assert.Equal("{\n    \"a\": [\n        1,\n        2\n    ],\n    \"b\": {}\n}", Render("{{ {'a': [1, 2], 'b': {}} | tojson(indent=4) }}"));
        Assert.Equal("{\"a\":1}", Render("{{ {'a': 1} | tojson(separators=(',', ':')) }}"));
        Assert.Equal("\"\\u00e9\\n\\\"\"", Render("{{ 'é\n\"' | tojson(ensure_ascii=true) }}"));
        Assert.Equal("{\"a\": 1, \"b\": 2}", Render("{{ {'b': 2, 'a': 1} | tojson(sort_keys=true) }}"));
    }

    [Fact]
    public void StringMethodsAndTests()
    {
        Assert.Equal("x|x |  x|True|False", Render("{{ '  x '.strip() }}|{{ '  x '.lstrip() }}|{{ '  x '.rstrip() }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'y')) }}"));
        Assert.Equal("['a', 'b', 'c'] ['a', 'b c'] ['a b', 'c']", Render("{{ ' a  b c '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a b c'.rsplit(' ', 1) }}"));
        Assert.Equal("Hello World HI", Render("{{ 'hello world'.title() }} {{ 'hi'.upper() }}"));
        Assert.Equal("a-b", Render("{{ 'a b'.replace(' ', '-') }}"));
        Assert.Equal("True True True True True", Render(
            "{{ x is mapping }} {{ s is string }} {{ l is iterable }} {{ n is none }} {{ 4 is divisibleby 2 }}",
            ("x", D()), ("s", "s"), ("l", L()), ("n", null)));
        Assert.Equal("False True", Render("{{ missing is defined }} {{ missing is undefined }}"));
        Assert.Equal("v d", Render("{{ d.get('k') }} {{ d.get('z', 'd') }}", ("d", D(("k", "v")))));
        Assert.Equal("content", Render("{{ m.content }}", ("m", D(("content", "content")))));
    }

    [Fact]
    public void ErrorsNameTheConstructAndLine()
    {
        var e = Assert.Throws<TemplateException>(() => JinjaTemplate.Parse("a\n{% include 'x.jinja' %}"));
        Assert.Equal(2, e.Line);
        Assert.Contains("include", e.Message);

        e = Assert.Throws<TemplateException>(() => JinjaTemplate.Parse("{{ x }}\n\n{{ x | frobnicate }}"));
        Assert.Equal(3, e.Line);
        Assert.Contains("frobnicate", e.Message);

        e = Assert.Throws<TemplateException>(() => JinjaTemplate.Parse("{% if x %}\nno end"));
        Assert.Contains("endif", e.Message);

        e = Assert.Throws<TemplateException>(() => Render("\n{{ raise_exception('roles must alternate') }}"));
        Assert.Equal(2, e.Line);
        Assert.Contains("roles must alternate", e.Message);

        e = Assert.Throws<TemplateException>(() => Render("{{ missing.attr }}"));
        Assert.Contains("'missing' is undefined", e.Message);

        e = Assert.Throws<TemplateException>(() => Render("{{ 'a'.zfill(3) }}"));
        Assert.Contains("zfill", e.Message);

        e = Assert.Throws<TemplateException>(() => Render("{{ xs.append(1) }}", ("xs", L())));
        Assert.Contains("append", e.Message);
    }
}
