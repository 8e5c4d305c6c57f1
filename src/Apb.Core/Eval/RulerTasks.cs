using Apb.Eval.Data;

namespace Apb.Eval;

/// <summary>What a task builds for a haystack of a given size; the size that meets the token budget is searched for.</summary>
public sealed record BuiltSample(string Context, string Query, IReadOnlyList<string> Answers);

/// <summary>
/// A RULER task: <see cref="Build"/> is deterministic in (seed, units) and grows with units (filler sentences, needle
/// lines, list items or words), so <see cref="SampleGenerator"/> can search units for a token budget.
/// </summary>
public sealed record RulerTask(string Name, string Description, Func<int, int, BuiltSample> Build);

/// <summary>
/// The RULER task family (Hsieh et al., 2024), regenerated from committed word lists: needle-in-a-haystack variants,
/// variable tracking, common- and frequent-word extraction. Prompts follow RULER's templates, split into a context
/// (instructions + document) and a query (question + answer prefix), the split APB needs.
/// </summary>
public static class RulerTasks
{
    const string NumbersHeader = "Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz you about the numbers afterwards.\n";

    public static readonly IReadOnlyList<RulerTask> All =
    [
        new("niah_single_1", "one needle, number value, repeated-noise haystack", (s, u) => Niah(s, u, Hay.Noise, Kind.Number, keys: 1, values: 1, queries: 1)),
        new("niah_single_2", "one needle, word value, essay haystack", (s, u) => Niah(s, u, Hay.Essay, Kind.Word, keys: 1, values: 1, queries: 1)),
        new("niah_single_3", "one needle, uuid value, essay haystack", (s, u) => Niah(s, u, Hay.Essay, Kind.Uuid, keys: 1, values: 1, queries: 1)),
        new("niah_multikey_1", "target + 3 distractor needles (other keys), essay haystack", (s, u) => Niah(s, u, Hay.Essay, Kind.Number, keys: 4, values: 1, queries: 1)),
        new("niah_multikey_2", "the haystack is all needles (word keys, number values)", (s, u) => NeedleHaystack(s, u, uuidKeys: false)),
        new("niah_multikey_3", "the haystack is all needles (uuid keys, uuid values)", (s, u) => NeedleHaystack(s, u, uuidKeys: true)),
        new("niah_multivalue", "one key with 4 values, all asked for", (s, u) => Niah(s, u, Hay.Essay, Kind.Number, keys: 1, values: 4, queries: 1)),
        new("niah_multiquery", "4 needles, all 4 keys asked for", (s, u) => Niah(s, u, Hay.Essay, Kind.Number, keys: 4, values: 1, queries: 4)),
        new("vt", "variable tracking: a chain of 4 assignments in noise, name every variable holding the value", VariableTracking),
        new("cwe", "common words: the most frequent words of a numbered list", CommonWords),
        new("fwe", "frequent words: the 3 most frequent made-up words of a coded text", FrequentWords),
    ];

    /// <summary>
    /// Tasks for training only: named explicitly (never by "all" or "niah"), so no accuracy table changes with them.
    /// niah_multikey_2_shared is multikey_2 with half its needles keyed by a word of the asked key: the embedded model's
    /// misses at 32K are all such one-word matches (docs/notes/multikey-long-context.md), which short haystacks rarely
    /// hold (6 at 4K against 34 at 32K), so training at short lengths never pays for matching both words.
    /// niah_multikey_3_prefix is multikey_3 with half the other needles' values sharing their first 2 to 8 characters
    /// with the asked value: multikey_3's misses at 32K are copying errors, the right value drifting after a few
    /// characters into another that starts the same way (docs/notes/multikey-long-context.md).
    /// </summary>
    public static readonly IReadOnlyList<RulerTask> Training =
    [
        new("niah_multikey_2_shared", "multikey_2 where half the keys share a word with the asked key (training only)", SharedWordHaystack),
        new("niah_multikey_3_prefix", "multikey_3 where half the values start like the asked value (training only)", SharedPrefixHaystack),
    ];

    /// <summary>
    /// Whether a task's answer stands in one place of the context (a needle, or vt's chain starting at its first
    /// variable): cwe and fwe count words over the whole context, so where their answers first appear says nothing.
    /// </summary>
    public static bool HasNeedle(string task) => task is not ("cwe" or "fwe");

    public static RulerTask Get(string name) => All.Concat(Training).FirstOrDefault(t => t.Name == name)
        ?? throw new ApbException($"unknown task '{name}': expected all or a comma list of {string.Join(", ", All.Select(t => t.Name))}" +
                                  $" (training only: {string.Join(", ", Training.Select(t => t.Name))})");

    /// <summary>"all", or a comma list of names (with "niah" as a shorthand for every niah_* task).</summary>
    public static IReadOnlyList<RulerTask> Parse(string spec)
    {
        var r = new List<RulerTask>();
        foreach (var part in spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (part == "all") r.AddRange(All);
            else if (part == "niah") r.AddRange(All.Where(t => t.Name.StartsWith("niah_", StringComparison.Ordinal)));
            else r.Add(Get(part));
        }
        if (r.Count == 0) throw new ApbException($"--tasks '{spec}' names no task: use all, niah, or names from {string.Join(", ", All.Select(t => t.Name))}");
        return r.Distinct().ToList();
    }

    enum Hay { Noise, Essay }
    enum Kind { Number, Word, Uuid }

    static string Noun(Kind k) => k switch { Kind.Number => "number", Kind.Word => "word", _ => "uuid" };

    static string MakeValue(Random rng, Kind k) => k switch
    {
        Kind.Number => Values.Number(rng),
        Kind.Word => Values.Word(rng),
        _ => Values.Uuid(rng),
    };

    static List<string> Filler(Random rng, Hay hay, int units) =>
        (hay == Hay.Noise ? Haystack.Noise() : Haystack.Essay(rng)).Take(units).ToList();

    /// <summary>
    /// Needles "One of the special magic Xs for KEY is: VALUE." at random depths in filler. keys: needles with distinct
    /// keys (the first <paramref name="queries"/> are asked for, the rest are distractors); values: needles per key.
    /// </summary>
    static BuiltSample Niah(int seed, int units, Hay hay, Kind kind, int keys, int values, int queries)
    {
        var rng = new Random(seed);
        var keyList = Values.Distinct(rng, keys, Values.Key);
        string noun = Noun(kind);
        var needles = new List<(double, string)>();
        var answers = new List<(double Depth, string Value)>();
        var used = new HashSet<string>();
        for (int k = 0; k < keys; k++)
            foreach (var v in Values.Distinct(rng, values, r => MakeValue(r, kind), used))
            {
                used.Add(v);
                double depth = rng.NextDouble();
                needles.Add((depth, $"One of the special magic {noun}s for {keyList[k]} is: {v}."));
                if (k < queries) answers.Add((depth, v));
            }
        var filler = Filler(rng, hay, units);
        string context = NumbersHeader.Replace("numbers", noun + "s") + string.Join(" ", Haystack.Insert(filler, needles)) + "\n";
        string asked = queries == 1 ? keyList[0] : string.Join(", ", keyList.Take(queries - 1)) + ", and " + keyList[queries - 1];
        bool plural = values > 1 || queries > 1;
        string query = plural
            ? $"What are all the special magic {noun}s for {asked} mentioned in the provided text? The special magic {noun}s for {asked} mentioned in the provided text are"
            : $"What is the special magic {noun} for {asked} mentioned in the provided text? The special magic {noun} for {asked} mentioned in the provided text is";
        // Several values are expected in the order they appear, which is what a reader (and a small model) would copy.
        return new BuiltSample(context, query, answers.OrderBy(a => a.Depth).Select(a => a.Value).ToList());
    }

    /// <summary>MK2/MK3: every unit of the haystack is a needle with its own key; one of them is asked for.</summary>
    static BuiltSample NeedleHaystack(int seed, int units, bool uuidKeys)
    {
        var rng = new Random(seed);
        int n = Math.Max(units, 1);
        string noun = uuidKeys ? "uuid" : "number";
        // Word keys run out of adjective-noun pairs at 12,000 needles (about 245K tokens): longer haystacks take
        // three-word keys. The others keep two words, so their samples stay the ones earlier runs measured.
        Func<Random, string> key = uuidKeys ? Values.Uuid : n <= Values.KeyCount ? Values.Key : Values.LongKey;
        var keyList = Values.Distinct(rng, n, key);
        var valueList = Values.Distinct(rng, n, uuidKeys ? Values.Uuid : Values.Number);
        return NeedlesOnly(noun, keyList, valueList, rng.Next(n));
    }

    /// <summary>A haystack of nothing but needles, key i holding value i, and the question for needle <paramref name="target"/>.</summary>
    static BuiltSample NeedlesOnly(string noun, IReadOnlyList<string> keys, IReadOnlyList<string> values, int target)
    {
        var lines = Enumerable.Range(0, keys.Count).Select(i => $"One of the special magic {noun}s for {keys[i]} is: {values[i]}.");
        string context = NumbersHeader.Replace("numbers", noun + "s") + string.Join(" ", lines) + "\n";
        string query = $"What is the special magic {noun} for {keys[target]} mentioned in the provided text? The special magic {noun} for {keys[target]} mentioned in the provided text is";
        return new BuiltSample(context, query, [values[target]]);
    }

    /// <summary>
    /// niah_multikey_2 with hard distractors: of the needles besides the asked one, half (at most every key that can
    /// share a word with it) have a key sharing its adjective or its noun; the rest are drawn as multikey_2's are.
    /// </summary>
    static BuiltSample SharedWordHaystack(int seed, int units)
    {
        var rng = new Random(seed);
        int n = Math.Clamp(units, 1, Values.KeyCount);
        string adjective = Haystack.Pick(rng, WordLists.Adjectives), noun = Haystack.Pick(rng, WordLists.Nouns);
        int sharing = Math.Min((n - 1) / 2, WordLists.Adjectives.Length + WordLists.Nouns.Length - 2);
        var (keyList, target) = WithLookAlikes(rng, n, $"{adjective}-{noun}", sharing, r => r.Next(2) == 0
            ? adjective + "-" + Haystack.Pick(r, WordLists.Nouns)
            : Haystack.Pick(r, WordLists.Adjectives) + "-" + noun, Values.Key);
        return NeedlesOnly("number", keyList, Values.Distinct(rng, n, Values.Number), target);
    }

    /// <summary>
    /// niah_multikey_3 with hard distractors for copying: of the needles besides the asked one, half hold a value whose
    /// first 2 to 8 characters (up to the first hyphen) are the asked value's, the rest of it fresh; the others and every
    /// key are drawn as multikey_3's are. Copying the first characters right then says nothing about the rest.
    /// </summary>
    static BuiltSample SharedPrefixHaystack(int seed, int units)
    {
        var rng = new Random(seed);
        int n = Math.Max(units, 1);
        var keyList = Values.Distinct(rng, n, Values.Uuid);
        string answer = Values.Uuid(rng);
        string StartsLikeAnswer(Random r)
        {
            string prefix = answer[..(2 + r.Next(7))];
            return prefix + Values.Uuid(r)[prefix.Length..];
        }
        var (valueList, target) = WithLookAlikes(rng, n, answer, (n - 1) / 2, StartsLikeAnswer, Values.Uuid);
        return NeedlesOnly("uuid", keyList, valueList, target);
    }

    /// <summary>
    /// <paramref name="n"/> distinct strings: <paramref name="asked"/> at a random place, <paramref name="lookAlikes"/>
    /// of the others drawn by <paramref name="lookAlike"/> and the rest by <paramref name="plain"/>, shuffled. Returns
    /// them and the asked one's index.
    /// </summary>
    static (List<string> Items, int Target) WithLookAlikes(Random rng, int n, string asked, int lookAlikes,
                                                          Func<Random, string> lookAlike, Func<Random, string> plain)
    {
        var taken = new HashSet<string> { asked };
        var others = Values.Distinct(rng, lookAlikes, lookAlike, taken);
        taken.UnionWith(others);
        others.AddRange(Values.Distinct(rng, n - 1 - lookAlikes, plain, taken));
        var items = others.OrderBy(_ => rng.Next()).ToList();
        int target = rng.Next(n);
        items.Insert(target, asked);
        return (items, target);
    }

    /// <summary>RULER vt: "VAR A = 12345." then "VAR B = VAR A." ... (4 hops) hidden in the noise haystack, in order.</summary>
    static BuiltSample VariableTracking(int seed, int units)
    {
        var rng = new Random(seed);
        const int Hops = 4;
        var names = Values.Distinct(rng, Hops + 1, Values.Variable);
        string value = rng.Next(10_000, 100_000).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var depths = Enumerable.Range(0, Hops + 1).Select(_ => rng.NextDouble()).Order().ToArray();
        var needles = new List<(double, string)> { (depths[0], $"VAR {names[0]} = {value}.") };
        for (int i = 1; i <= Hops; i++) needles.Add((depths[i], $"VAR {names[i]} = VAR {names[i - 1]}."));
        var filler = Filler(rng, Hay.Noise, units);
        string context = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n" +
                         string.Join(" ", Haystack.Insert(filler, needles)) + "\n";
        string query = $"Question: Find all variables that are assigned the value {value} in the text above. Answer: According to the chain(s) of variable assignment in the text above, {Hops + 1} variables are assigned the value {value}, they are:";
        return new BuiltSample(context, query, names);
    }

    /// <summary>
    /// RULER cwe: a numbered list where a few words recur often (30 times at full size, fewer when the budget is short)
    /// and the rest rarely; the answer is the set of frequent words. Words are made up, so no word list runs out.
    /// </summary>
    static BuiltSample CommonWords(int seed, int units)
    {
        var rng = new Random(seed);
        int items = Math.Max(units, 8);
        int common = items >= 150 ? 10 : 5;
        int freqCommon = Math.Clamp(items * 2 / 5 / common, 2, 30);
        int freqRare = Math.Clamp(freqCommon / 3, 1, 3);
        if (freqRare >= freqCommon) freqRare = freqCommon - 1;
        int rare = Math.Max((items - common * freqCommon) / freqRare, 0);
        var words = Values.Distinct(rng, common + rare, Values.MadeUp);
        var list = new List<string>(common * freqCommon + rare * freqRare);
        for (int i = 0; i < common; i++) list.AddRange(Enumerable.Repeat(words[i], freqCommon));
        for (int i = common; i < words.Count; i++) list.AddRange(Enumerable.Repeat(words[i], freqRare));
        Shuffle(rng, list);
        string context = "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n" +
                         string.Join(" ", list.Select((w, i) => $"{i + 1}. {w}")) + "\n";
        string query = $"Question: What are the {common} most common words in the above list? Answer: The top {common} words that appear most often in the list are:";
        var first = list.Distinct().Where(w => words.IndexOf(w) < common).ToList();
        return new BuiltSample(context, query, first);
    }

    /// <summary>RULER fwe: made-up words with Zipf-like counts (alpha 2); the three most frequent, strictly ahead of the rest.</summary>
    static BuiltSample FrequentWords(int seed, int units)
    {
        var rng = new Random(seed);
        int total = Math.Max(units, 12);
        int vocab = Math.Max(8, total / 6);
        var words = Values.Distinct(rng, vocab, Values.MadeUp);
        double z = Enumerable.Range(1, vocab).Sum(k => 1.0 / ((double)k * k));
        var counts = Enumerable.Range(1, vocab).Select(k => Math.Max(1, (int)Math.Round(total / z / ((double)k * k)))).ToArray();
        for (int k = 2; k >= 0; k--)   // the top three strictly above everything after them
            if (counts[k] <= counts[k + 1]) counts[k] = counts[k + 1] + 1;
        var list = new List<string>();
        for (int k = 0; k < vocab; k++) list.AddRange(Enumerable.Repeat(words[k], counts[k]));
        Shuffle(rng, list);
        var text = new System.Text.StringBuilder();
        for (int i = 0; i < list.Count; i++)
        {
            if (i > 0) text.Append(i % 10 == 0 ? " .... " : " ");
            text.Append(list[i]);
        }
        string context = "Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words.\n" + text + "\n";
        const string query = "Question: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text? Answer: According to the coded text above, the three most frequently appeared words are:";
        return new BuiltSample(context, query, words.Take(3).ToList());
    }

    static void Shuffle<T>(Random rng, List<T> list)
    {
        for (int i = list.Count - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (list[i], list[j]) = (list[j], list[i]);
        }
    }
}
