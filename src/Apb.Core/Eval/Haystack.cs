using Apb.Eval.Data;

namespace Apb.Eval;

/// <summary>Filler text, drawn from the committed word lists: RULER's repeated noise, or essay-like sentences.</summary>
static class Haystack
{
    /// <summary>Unit i of the noise haystack: its sentences in a cycle, so any count of units is valid text.</summary>
    public static IEnumerable<string> Noise()
    {
        var s = WordLists.Noise.Split(". ", StringSplitOptions.RemoveEmptyEntries).Select(x => x.TrimEnd('.') + ".").ToArray();
        for (int i = 0; ; i++) yield return s[i % s.Length];
    }

    /// <summary>An endless stream of essay-like sentences from the templates; the same rng state gives the same stream.</summary>
    public static IEnumerable<string> Essay(Random rng)
    {
        while (true)
        {
            string t = WordLists.Templates[rng.Next(WordLists.Templates.Length)];
            var sb = new System.Text.StringBuilder(t.Length + 32);
            for (int i = 0; i < t.Length; i++)
            {
                if (t[i] == '{' && i + 2 < t.Length && t[i + 2] == '}')
                {
                    sb.Append(t[i + 1] switch
                    {
                        'a' => Pick(rng, WordLists.Adjectives),
                        'n' => Pick(rng, WordLists.Nouns),
                        'v' => Pick(rng, WordLists.Verbs),
                        'd' => Pick(rng, WordLists.Adverbs),
                        _ => throw new InvalidOperationException($"unknown slot {{{t[i + 1]}}} in template '{t}'"),
                    });
                    i += 2;
                }
                else sb.Append(t[i]);
            }
            yield return sb.ToString();
        }
    }

    public static string Pick(Random rng, string[] list) => list[rng.Next(list.Length)];

    /// <summary>Puts each needle at its depth (0..1) among the filler units; needles keep their order at equal depth.</summary>
    public static List<string> Insert(IReadOnlyList<string> filler, IReadOnlyList<(double Depth, string Text)> needles)
    {
        var at = needles.Select((n, i) => (Pos: (int)Math.Round(n.Depth * filler.Count), n.Text, i))
            .OrderBy(x => x.Pos).ThenBy(x => x.i).ToList();
        var r = new List<string>(filler.Count + needles.Count);
        int k = 0;
        for (int i = 0; i <= filler.Count; i++)
        {
            while (k < at.Count && at[k].Pos == i) r.Add(at[k++].Text);
            if (i < filler.Count) r.Add(filler[i]);
        }
        return r;
    }
}

/// <summary>Random values for needles: numbers, words, uuids, variable names, made-up words.</summary>
static class Values
{
    public static string Number(Random rng) => rng.Next(1_000_000, 10_000_000).ToString(System.Globalization.CultureInfo.InvariantCulture);

    public static string Word(Random rng) => Haystack.Pick(rng, WordLists.Nouns);

    public static string Key(Random rng) => Haystack.Pick(rng, WordLists.Adjectives) + "-" + Haystack.Pick(rng, WordLists.Nouns);

    /// <summary>How many distinct <see cref="Key"/>s there are (adjective x noun).</summary>
    public static int KeyCount => WordLists.Adjectives.Length * WordLists.Nouns.Length;

    /// <summary>A key of three words ("quiet-river-lamp"), for haystacks with more needles than <see cref="KeyCount"/>.</summary>
    public static string LongKey(Random rng) => Key(rng) + "-" + Haystack.Pick(rng, WordLists.Nouns);

    public static string Uuid(Random rng)
    {
        Span<byte> b = stackalloc byte[16];
        rng.NextBytes(b);
        string h = Convert.ToHexStringLower(b);
        return $"{h[..8]}-{h[8..12]}-{h[12..16]}-{h[16..20]}-{h[20..]}";
    }

    public static string Variable(Random rng)
    {
        Span<char> c = stackalloc char[5];
        for (int i = 0; i < c.Length; i++) c[i] = (char)('A' + rng.Next(26));
        return new string(c);
    }

    static readonly string[] Onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "ch", "gl", "pr", "st", "tr"];
    static readonly string[] Vowels = ["a", "e", "i", "o", "u"];

    /// <summary>A pronounceable made-up word of 2-3 syllables ("bravoki"): lists of them need no word list.</summary>
    public static string MadeUp(Random rng)
    {
        int syllables = 2 + rng.Next(2);
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < syllables; i++) sb.Append(Haystack.Pick(rng, Onsets)).Append(Haystack.Pick(rng, Vowels));
        return sb.ToString();
    }

    /// <summary><paramref name="count"/> distinct values from <paramref name="make"/>, excluding <paramref name="taken"/>.</summary>
    public static List<string> Distinct(Random rng, int count, Func<Random, string> make, ISet<string>? taken = null)
    {
        var seen = taken != null ? new HashSet<string>(taken) : new HashSet<string>();
        var r = new List<string>(count);
        for (int tries = 0; r.Count < count; tries++)
        {
            if (tries > 100 * count + 1000) throw new InvalidOperationException($"cannot draw {count} distinct values");
            string v = make(rng);
            if (seen.Add(v)) r.Add(v);
        }
        return r;
    }
}
