namespace Apb.Eval.Data;

/// <summary>
/// The vocabulary every task draws from: committed here so that samples depend on the seed alone (no downloads).
/// Lists hold no duplicates across the noun/adjective/verb lists, so a key like "silent-harbor" names one needle.
/// </summary>
static class WordLists
{
    public static readonly string[] Nouns =
    [
        "harbor", "garden", "mountain", "river", "village", "library", "market", "forest", "castle", "island",
        "bridge", "valley", "meadow", "lantern", "compass", "violin", "engine", "teacher", "farmer", "sailor",
        "painter", "doctor", "merchant", "captain", "pilot", "student", "writer", "baker", "tailor", "hunter",
        "window", "mirror", "candle", "blanket", "basket", "kettle", "ladder", "hammer", "pencil", "notebook",
        "journal", "letter", "ticket", "coin", "ribbon", "feather", "pebble", "shell", "acorn", "apple",
        "orange", "lemon", "cherry", "walnut", "carrot", "potato", "pepper", "honey", "butter", "cheese",
        "bread", "cookie", "tea", "coffee", "winter", "summer", "autumn", "spring", "morning", "evening",
        "thunder", "rainbow", "comet", "planet", "galaxy", "ocean", "desert", "glacier", "volcano", "canyon",
        "falcon", "sparrow", "dolphin", "tiger", "rabbit", "turtle", "otter", "badger", "beetle", "salmon",
        "horse", "camel", "wolf", "fox", "owl", "whale", "spider", "lizard", "pigeon", "panther",
        "factory", "station", "theater", "museum", "stadium", "hospital", "school", "church", "tower", "cabin",
        "wagon", "bicycle", "rocket", "submarine", "tractor", "carriage", "canoe", "yacht", "balloon", "train",
        "theory", "question", "answer", "problem", "promise", "secret", "story", "memory", "habit", "reason",
        "signal", "pattern", "method", "result", "record", "figure", "detail", "budget", "contract", "meeting",
        "melody", "rhythm", "poem", "novel", "picture", "statue", "puzzle", "riddle", "recipe", "formula",
    ];

    public static readonly string[] Adjectives =
    [
        "silent", "golden", "ancient", "bright", "hidden", "gentle", "rapid", "humble", "curious", "distant",
        "frozen", "hollow", "lively", "modest", "narrow", "patient", "quiet", "rustic", "serene", "tender",
        "vivid", "wooden", "young", "brave", "calm", "eager", "fancy", "grand", "happy", "jolly",
        "kind", "lucky", "mighty", "noble", "proud", "rare", "sharp", "smooth", "steady", "swift",
        "tidy", "urban", "vast", "warm", "wild", "wise", "bold", "clever", "crimson", "dusty",
        "elegant", "faint", "fierce", "fragile", "gloomy", "graceful", "heavy", "icy", "loyal", "lonely",
        "misty", "nimble", "odd", "pale", "plain", "polite", "purple", "restless", "royal", "scarlet",
        "shiny", "sleepy", "soft", "sturdy", "sunny", "tall", "thirsty", "tiny", "tired", "velvet",
    ];

    public static readonly string[] Verbs =
    [
        "explains", "describes", "reveals", "follows", "changes", "protects", "improves", "remembers", "discovers", "measures",
        "supports", "examines", "connects", "shapes", "guides", "questions", "records", "balances", "carries", "builds",
        "watches", "teaches", "collects", "repairs", "designs", "studies", "imagines", "celebrates", "challenges", "rewards",
    ];

    public static readonly string[] Adverbs =
    [
        "quietly", "slowly", "quickly", "carefully", "rarely", "often", "always", "gradually", "suddenly", "eventually",
        "patiently", "boldly", "gently", "clearly", "barely", "openly",
    ];

    /// <summary>Sentence shapes for essay-like haystack text; {a} adjective, {n} noun, {v} verb, {d} adverb.</summary>
    public static readonly string[] Templates =
    [
        "The {a} {n} {v} the {n} in a way that few people expect.",
        "Most of the time a {a} {n} {d} {v} what the {n} cannot.",
        "When the {n} is {a}, the {n} {d} {v} the rest of the {n}.",
        "It is worth asking why every {a} {n} {v} a {n}.",
        "In my experience the {n} {v} the {a} {n} more than anything else.",
        "A {a} {n} is rarely what it seems, and the {n} {v} that.",
        "People who build a {n} learn that the {a} {n} {d} {v} them.",
        "There is a reason the {n} {v} the {n}: it is {a}.",
        "If you look at the {n} closely, you see how it {v} the {a} {n}.",
        "The best {n} I know {d} {v} a {a} {n} and nothing more.",
        "Nobody planned for the {n} to be so {a}, yet it {v} the {n}.",
        "What matters is not the {n} but how the {a} {n} {v} it.",
        "Over the years the {a} {n} {d} {v} the old {n}.",
        "Startups learn this lesson late: the {n} {v} the {a} {n}.",
        "Think of a {a} {n} that {v} a {n} every morning.",
        "The {n} and the {n} are both {a}, but only one {v} the {n}.",
        "Every {n} has a {a} side that {d} {v} the {n}.",
        "You can tell a {a} {n} by the way it {v} the {n}.",
    ];

    /// <summary>RULER's noise haystack: the same five sentences again and again.</summary>
    public const string Noise = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
}
