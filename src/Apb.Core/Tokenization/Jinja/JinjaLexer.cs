using System.Globalization;
using System.Text;

namespace Apb.Tokenization.Jinja;

internal enum TokenKind { Text, VariableBegin, VariableEnd, BlockBegin, BlockEnd, Name, String, Integer, Float, Operator, End }

internal readonly record struct Token(TokenKind Kind, string Value, int Line)
{
    public bool Is(TokenKind kind, string value) => Kind == kind && Value == value;
    public bool IsName(string name) => Is(TokenKind.Name, name);
    public bool IsOperator(string op) => Is(TokenKind.Operator, op);

    public override string ToString() => Kind switch
    {
        TokenKind.End => "the end of the template",
        TokenKind.BlockEnd => "'%}'",
        TokenKind.VariableEnd => "'}}'",
        TokenKind.String => $"the string '{Value}'",
        TokenKind.Text => "template text",
        _ => $"'{Value}'",
    };
}

/// <summary>
/// Splits template source into text and tag tokens with the whitespace rules of the environment transformers renders
/// chat templates in: newlines normalized to \n, one trailing newline dropped (keep_trailing_newline=False),
/// trim_blocks (the first newline after a block or comment tag is removed), lstrip_blocks (spaces and tabs before a
/// block or comment tag at the start of a line are removed), and the explicit "-" (strip all whitespace on that side)
/// and "+" (keep it) markers. Inside tags: names, string and number literals and operators, as Jinja's lexer reads them.
/// </summary>
internal sealed class JinjaLexer
{
    private static readonly string[] Operators =
        ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"];

    private readonly string _source;
    private readonly List<Token> _tokens = new();
    private int _pos;
    private int _line = 1;

    private JinjaLexer(string source) => _source = Normalize(source);

    public static List<Token> Tokenize(string source)
    {
        var lexer = new JinjaLexer(source);
        lexer.Run();
        return lexer._tokens;
    }

    private static string Normalize(string source)
    {
        string s = source.Replace("\r\n", "\n").Replace('\r', '\n');
        return s.EndsWith('\n') ? s[..^1] : s;
    }

    private void Run()
    {
        bool stripNextText = false;  // the previous tag ended with "-"
        bool trimNewline = false;    // the previous tag was a block or comment tag (trim_blocks)
        bool lineStarting = true;    // the text begins at the start of a line
        while (true)
        {
            int tag = FindTag(_pos);
            string text = _source[_pos..(tag < 0 ? _source.Length : tag)];
            int textLine = _line;
            _line += Count(text, '\n');
            if (stripNextText) text = text.TrimStart(PythonWhitespace);
            else if (trimNewline && text.StartsWith('\n')) text = text[1..];
            if (tag < 0)
            {
                Emit(TokenKind.Text, text, textLine);
                break;
            }

            char kind = _source[tag + 1];
            char sign = tag + 2 < _source.Length ? _source[tag + 2] : '\0';
            if (sign == '-') text = text.TrimEnd(PythonWhitespace);
            else if (sign != '+' && kind != '{')
            {
                // lstrip_blocks: the tag alone on its line so far loses the indentation before it.
                int lineStart = text.LastIndexOf('\n') + 1;
                if ((lineStart > 0 || lineStarting) && text.AsSpan(lineStart).TrimStart(" \t").IsEmpty) text = text[..lineStart];
            }
            Emit(TokenKind.Text, text, textLine);
            _pos = tag + 2 + (sign is '-' or '+' ? 1 : 0);

            bool endStrip, endKeep;
            if (kind == '#') (endStrip, endKeep) = SkipComment();
            else (endStrip, endKeep) = LexTag(kind == '{');
            // What the end of the tag consumes: all whitespace after "-", else one newline after a block or comment.
            stripNextText = endStrip;
            trimNewline = kind != '{' && !endKeep;
            lineStarting = endStrip ? EndsStrippedWhitespaceWithNewline() : trimNewline && _pos < _source.Length && _source[_pos] == '\n';
        }
    }

    private bool EndsStrippedWhitespaceWithNewline()
    {
        int i = _pos;
        while (i < _source.Length && IsPythonWhitespace(_source[i])) i++;
        return i > _pos && _source[i - 1] == '\n';
    }

    // The next "{{", "{%" or "{#", or -1.
    private int FindTag(int from)
    {
        for (int i = _source.IndexOf('{', from); i >= 0 && i + 1 < _source.Length; i = _source.IndexOf('{', i + 1))
            if (_source[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    private (bool Strip, bool Keep) SkipComment()
    {
        int end = _source.IndexOf("#}", _pos, StringComparison.Ordinal);
        if (end < 0) throw new TemplateException(_line, "a comment '{#' is never closed with '#}'");
        bool strip = end > _pos && _source[end - 1] == '-';
        bool keep = end > _pos && _source[end - 1] == '+';
        _line += Count(_source.AsSpan(_pos, end - _pos), '\n');
        _pos = end + 2;
        return (strip, keep);
    }

    private (bool Strip, bool Keep) LexTag(bool variable)
    {
        int startLine = _line;
        Emit(variable ? TokenKind.VariableBegin : TokenKind.BlockBegin, "", _line);
        string close = variable ? "}}" : "%}";
        int depth = 0; // open brackets: "}}" inside a dict literal does not end the tag
        while (true)
        {
            while (_pos < _source.Length && char.IsWhiteSpace(_source[_pos]))
            {
                if (_source[_pos] == '\n') _line++;
                _pos++;
            }
            if (_pos >= _source.Length)
                throw new TemplateException(startLine, $"a tag opened here is never closed with '{close}'");
            if (depth == 0)
            {
                foreach (char marker in "-+")
                    if (_source[_pos] == marker && At(_pos + 1, close))
                    {
                        _pos += 3;
                        Emit(variable ? TokenKind.VariableEnd : TokenKind.BlockEnd, "", _line);
                        return (marker == '-', marker == '+');
                    }
                if (At(_pos, close))
                {
                    _pos += 2;
                    Emit(variable ? TokenKind.VariableEnd : TokenKind.BlockEnd, "", _line);
                    return (false, false);
                }
            }
            char c = _source[_pos];
            if (char.IsAsciiLetter(c) || c == '_')
            {
                int s = _pos;
                while (_pos < _source.Length && (char.IsAsciiLetterOrDigit(_source[_pos]) || _source[_pos] == '_')) _pos++;
                Emit(TokenKind.Name, _source[s.._pos], _line);
            }
            else if (char.IsAsciiDigit(c)) LexNumber();
            else if (c is '\'' or '"') LexString(c);
            else
            {
                string? op = Operators.FirstOrDefault(o => At(_pos, o));
                if (op is null) throw new TemplateException(_line, $"unexpected character '{c}' inside a tag");
                if (op is "(" or "[" or "{") depth++;
                else if (op is ")" or "]" or "}") depth = Math.Max(0, depth - 1);
                _pos += op.Length;
                Emit(TokenKind.Operator, op, _line);
            }
        }
    }

    private void LexNumber()
    {
        int s = _pos;
        while (_pos < _source.Length && (char.IsAsciiDigit(_source[_pos]) || _source[_pos] == '_')) _pos++;
        bool isFloat = false;
        if (_pos + 1 < _source.Length && _source[_pos] == '.' && char.IsAsciiDigit(_source[_pos + 1]))
        {
            isFloat = true;
            _pos++;
            while (_pos < _source.Length && (char.IsAsciiDigit(_source[_pos]) || _source[_pos] == '_')) _pos++;
        }
        if (_pos < _source.Length && _source[_pos] is 'e' or 'E')
        {
            int e = _pos + 1;
            if (e < _source.Length && _source[e] is '+' or '-') e++;
            if (e < _source.Length && char.IsAsciiDigit(_source[e]))
            {
                isFloat = true;
                _pos = e;
                while (_pos < _source.Length && char.IsAsciiDigit(_source[_pos])) _pos++;
            }
        }
        Emit(isFloat ? TokenKind.Float : TokenKind.Integer, _source[s.._pos].Replace("_", ""), _line);
    }

    // Python's unicode-escape rules, which Jinja applies to string literals.
    private void LexString(char quote)
    {
        int startLine = _line;
        var sb = new StringBuilder();
        _pos++;
        while (true)
        {
            if (_pos >= _source.Length) throw new TemplateException(startLine, "a string literal is never closed");
            char c = _source[_pos++];
            if (c == quote) break;
            if (c == '\n') _line++;
            if (c != '\\' || _pos >= _source.Length)
            {
                sb.Append(c);
                continue;
            }
            char e = _source[_pos++];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case '\n': _line++; break; // a backslash-newline continues the line
                case 'x': sb.Append(HexEscape(2)); break;
                case 'u': sb.Append(HexEscape(4)); break;
                case 'U': sb.Append(HexEscape(8)); break;
                case >= '0' and <= '7':
                    int value = e - '0', digits = 1;
                    while (digits < 3 && _pos < _source.Length && _source[_pos] is >= '0' and <= '7')
                    {
                        value = value * 8 + (_source[_pos++] - '0');
                        digits++;
                    }
                    sb.Append(char.ConvertFromUtf32(value));
                    break;
                default: sb.Append('\\').Append(e); break; // Python keeps unknown escapes as written
            }
        }
        Emit(TokenKind.String, sb.ToString(), startLine);
    }

    private string HexEscape(int digits)
    {
        if (_pos + digits > _source.Length
            || !int.TryParse(_source.AsSpan(_pos, digits), NumberStyles.AllowHexSpecifier, null, out int value)
            || value > 0x10FFFF || value is >= 0xD800 and <= 0xDFFF)
            throw new TemplateException(_line, $"a string literal has a malformed \\{(digits == 2 ? 'x' : digits == 4 ? 'u' : 'U')} escape");
        _pos += digits;
        return char.ConvertFromUtf32(value);
    }

    private bool At(int pos, string s) => string.CompareOrdinal(_source, pos, s, 0, s.Length) == 0;

    private void Emit(TokenKind kind, string value, int line)
    {
        if (kind == TokenKind.Text && value.Length == 0) return;
        _tokens.Add(new Token(kind, value, line));
    }

    private static int Count(ReadOnlySpan<char> s, char c) => s.Count(c);

    internal static readonly char[] PythonWhitespace =
        Enumerable.Range(0, 0x3001).Select(i => (char)i).Where(IsPythonWhitespace).ToArray();

    /// <summary>Python's str.isspace (what strip(), split() and the "-" marker remove).</summary>
    internal static bool IsPythonWhitespace(char c) => char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f';
}
