using System.Text;
using System.Text.RegularExpressions;

namespace Apb.Tokenization;

/// <summary>
/// Turns a pre-tokenizer pattern from tokenizer.json (written for Oniguruma, which HF uses) into a .NET regex.
/// The patterns of the tokenizers we ship against are source-generated (fast under Native AOT, where a run-time
/// <see cref="RegexOptions.Compiled"/> regex falls back to the interpreter); any other pattern is translated and
/// interpreted.
/// </summary>
internal static partial class PreTokenizerRegex
{
    public const string Llama3 =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string Qwen2 =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    /// <summary>The pattern ByteLevel uses when <c>use_regex</c> is true (GPT-2's).</summary>
    public const string Gpt2 = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private const RegexOptions Options = RegexOptions.CultureInvariant;

    // Translate(Llama3) and Translate(Qwen2), written out for the source generator (a test keeps them in step).
    internal const string Llama3Translated =
        @"(?i:'[sſ]|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    internal const string Qwen2Translated =
        @"(?i:'[sſ]|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    [GeneratedRegex(Llama3Translated, Options)] private static partial Regex Llama3Regex();
    [GeneratedRegex(Qwen2Translated, Options)] private static partial Regex Qwen2Regex();
    [GeneratedRegex(Gpt2, Options)] private static partial Regex Gpt2Regex();

    public static Regex Gpt2Pattern => Gpt2Regex();

    /// <summary>A short name for the pattern when it is one we know ("Llama-3", "Qwen2", "GPT-2"), else null.</summary>
    public static string? KnownName(string pattern) => pattern switch
    {
        Llama3 => "Llama-3",
        Qwen2 => "Qwen2",
        Gpt2 => "GPT-2",
        _ => null,
    };

    /// <summary>The regex for <paramref name="pattern"/>; <paramref name="where"/> names it in errors.</summary>
    public static Regex Create(string pattern, string where)
    {
        switch (pattern)
        {
            case Llama3: return Llama3Regex();
            case Qwen2: return Qwen2Regex();
            case Gpt2: return Gpt2Regex();
        }
        string translated;
        try
        {
            int i = 0;
            translated = TranslateSequence(pattern, ref i, ignoreCase: false);
            if (i != pattern.Length) throw new FormatException($"unbalanced ')' at offset {i}");
            return new Regex(translated, Options | RegexOptions.Compiled);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or IndexOutOfRangeException)
        {
            throw new ApbException(
                $"{where}: the pre-tokenizer regex {Quote(pattern)} cannot be used: {e.Message.TrimEnd('.')}. Supported: patterns " +
                @"made of \p{L}/\p{N}-style categories, \s, classes, groups, lookarounds and (possessive) quantifiers, " +
                "as in the Llama-3, Qwen and GPT-2 tokenizers. Oniguruma-only syntax (scripts such as \\p{Han}, " +
                "nested classes) is not supported.", e);
        }
    }

    private static string Quote(string s) => s.Length <= 160 ? $"\"{s}\"" : $"\"{s[..160]}...\"";

    /// <summary>The .NET form of an Oniguruma pattern.</summary>
    internal static string Translate(string pattern)
    {
        int i = 0;
        return TranslateSequence(pattern, ref i, ignoreCase: false);
    }

    // Oniguruma features .NET lacks or reads differently are rewritten:
    // - possessive quantifiers (X?+, X*+, X++, X{n,m}+) become atomic groups, which is what they mean;
    // - "{,n}" becomes "{0,n}";
    // - under (?i), Oniguruma folds by Unicode CaseFolding.txt, where U+017F (long s) folds to s and U+212A (Kelvin
    //   sign) to k; .NET's case table does not, so "'s" would miss "'ſ" (HF then splits "'ſx" as "'ſ" + "x").
    private static string TranslateSequence(string p, ref int i, bool ignoreCase)
    {
        var sb = new StringBuilder(p.Length + 16);
        while (i < p.Length && p[i] != ')')
        {
            if (p[i] == '|') { sb.Append('|'); i++; continue; }
            string atom = ReadAtom(p, ref i, ref ignoreCase);
            string quantifier = ReadQuantifier(p, ref i);
            bool possessive = i < p.Length && p[i] == '+' && quantifier.Length > 0
                && (quantifier == "?" || !quantifier.EndsWith('?'));
            if (possessive)
            {
                i++;
                sb.Append("(?>").Append(atom).Append(quantifier).Append(')');
            }
            else sb.Append(atom).Append(quantifier);
        }
        return sb.ToString();
    }

    private static string ReadAtom(string p, ref int i, ref bool ignoreCase)
    {
        int start = i;
        switch (p[i])
        {
            case '\\':
                i += 2;
                if (i <= p.Length && (p[i - 1] is 'p' or 'P') && i < p.Length && p[i] == '{')
                    i = p.IndexOf('}', i) + 1;
                if (i > p.Length || i <= start) throw new FormatException($"unterminated escape at offset {start}");
                return p[start..i];
            case '[':
                i++;
                if (i < p.Length && p[i] == '^') i++;
                if (i < p.Length && p[i] == ']') i++;
                while (i < p.Length && p[i] != ']') i += p[i] == '\\' ? 2 : 1;
                if (i >= p.Length) throw new FormatException($"unterminated character class at offset {start}");
                i++;
                return p[start..i];
            case '(':
                i++;
                string prefix = ReadGroupPrefix(p, ref i, out bool inlineOptions);
                bool innerIgnoreCase = IgnoreCaseAfter(prefix, ignoreCase);
                if (inlineOptions)
                {
                    ignoreCase = innerIgnoreCase; // (?i) applies to the rest of the enclosing group
                    return "(" + prefix + ")";
                }
                string inner = TranslateSequence(p, ref i, innerIgnoreCase);
                if (i >= p.Length) throw new FormatException($"unterminated group at offset {start}");
                i++;
                return "(" + prefix + inner + ")";
            default:
                i += char.IsHighSurrogate(p[i]) && i + 1 < p.Length ? 2 : 1;
                if (ignoreCase && p[start] is 's' or 'S') return "[sſ]";
                if (ignoreCase && p[start] is 'k' or 'K') return "[kK]";
                return p[start..i];
        }
    }

    // The case-insensitivity inside a group opened with prefix "?i:", "?-i:", "?im-x:", ... (or an inline "?i").
    private static bool IgnoreCaseAfter(string prefix, bool outer)
    {
        if (prefix.Length < 2 || prefix[0] != '?' || !char.IsAsciiLetter(prefix[1]) && prefix[1] != '-') return outer;
        int dash = prefix.IndexOf('-');
        string on = dash < 0 ? prefix[1..] : prefix[1..dash], off = dash < 0 ? "" : prefix[(dash + 1)..];
        return on.Contains('i') || outer && !off.Contains('i');
    }

    private static string ReadGroupPrefix(string p, ref int i, out bool inlineOptions)
    {
        inlineOptions = false;
        if (i >= p.Length || p[i] != '?') return "";
        int start = i;
        i++;
        if (i < p.Length && p[i] is ':' or '=' or '!' or '>') { i++; return p[start..i]; }
        if (i + 1 < p.Length && p[i] == '<' && p[i + 1] is '=' or '!') { i += 2; return p[start..i]; }
        if (i < p.Length && p[i] is '<' or '\'')
        {
            char close = p[i] == '<' ? '>' : '\'';
            i = p.IndexOf(close, i + 1) + 1;
            if (i <= 0) throw new FormatException($"unterminated group name at offset {start}");
            return p[start..i];
        }
        while (i < p.Length && (char.IsAsciiLetter(p[i]) || p[i] == '-')) i++;
        if (i >= p.Length) throw new FormatException($"unterminated group at offset {start}");
        if (p[i] == ')') { inlineOptions = true; i++; return p[start..(i - 1)]; }
        if (p[i] != ':') throw new FormatException($"unknown group construct at offset {start}");
        i++;
        return p[start..i];
    }

    private static string ReadQuantifier(string p, ref int i)
    {
        if (i >= p.Length) return "";
        int start = i;
        if (p[i] is '?' or '*' or '+') i++;
        else if (p[i] == '{')
        {
            int close = p.IndexOf('}', i);
            if (close < 0) return "";
            string body = p[(i + 1)..close];
            bool valid = body.Length > 0 && body.All(ch => char.IsAsciiDigit(ch) || ch == ',') && body.Count(ch => ch == ',') <= 1;
            if (!valid) return "";
            i = close + 1;
            if (body.StartsWith(',')) body = "0" + body;
            string q = "{" + body + "}";
            if (i < p.Length && p[i] == '?') { i++; q += "?"; }
            return q;
        }
        else return "";
        if (i < p.Length && p[i] == '?') i++;
        return p[start..i];
    }
}
