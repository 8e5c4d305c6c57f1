using System.Text.Json;
using Apb.Eval;
using Xunit;

namespace Apb.Tests.Eval;

/// <summary>
/// The harness end to end on the CPU: on the trained models/embedded it must retrieve (an accuracy floor); on the
/// random-weight fixture (embedded-random) only the plumbing is checked (its accuracy is ~0 by construction).
/// </summary>
public class HarnessTests
{
    static string SmallModel => Repo.EmbeddedModel;

    /// <summary>
    /// The CI slice of the accuracy issues: every task, 2 samples each at 1K tokens, through the CLI on the CPU, APB with
    /// its default scorer (no --scorer: auto, which on models/embedded must pick the retaining heads the folder ships,
    /// mixed with the novelty term). Measured on the committed model (models/embedded, run 12, sha256 d7047628...), the
    /// same samples as this test, with the default l_p of 512, cut to the block (so every block passes all of its rows;
    /// under the default passing budget of 2 l_p rank 3 reads the best two thirds of each earlier block):
    /// <list type="bullet">
    /// <item>full 93.3 (every needle task and vt 100):
    /// <c>apb eval ruler --model models/embedded --tasks all --length 1k --samples 2 --ranks 4 --strategies full,apb</c></item>
    /// <item>default APB x4 92.2 (every needle task 100 but multi-query 87.5, vt 90), with the passing budget (session 29's
    /// build) as without it (session 28's): what is lost here is not the budget's selection but the anchor, the query
    /// copied in front of every later block. (Run 9 of the model: 93.7, vt 100; run 6 with APB's code before the anchor
    /// rows stopped being passed again: 90.8, vt 80.)</item>
    /// </list>
    /// The single-needle and multi-key tasks must stay within 5 points of full (issue #24's bar). vt is held to a floor
    /// instead, as 2 samples cannot resolve 5 points (one variable is 10); the floor catches a default that falls further
    /// (the query term alone kept 70 at 2K).
    /// </summary>
    [Fact]
    public void DefaultApbOnTheTrainedSmallModelKeepsItsAccuracyOnAOneKSliceOfEveryTask()
    {
        using var tmp = new TempDir();
        string full = tmp.File("full.json"), apb = tmp.File("apb.json");
        string[] common = ["eval", "ruler", "--model", SmallModel, "--tasks", "all", "--length", "1k", "--samples", "2", "--ranks", "4"];
        var (code, table, err) = CliRun.Apb([.. common, "--strategies", "full", "--json", full]);
        Assert.True(code == 0, err);
        var rows = Accuracies(full);
        Assert.Equal(11, rows.Count);
        string[] retrieval = [.. RulerTasks.All.Select(t => t.Name).Where(n => n.StartsWith("niah_", StringComparison.Ordinal)), "vt"];
        double retrievalMean = retrieval.Average(t => rows[t]), fullMean = rows.Values.Average();
        Assert.True(retrievalMean >= 0.9, $"full attention: needle tasks and vt {retrievalMean:F3} (was 1.0 when committed)\n{table}");
        Assert.True(fullMean >= 0.8, $"full attention: mean {fullMean:F3} over all tasks (0.933 on run 12 of the model)\n{table}");

        (code, table, err) = CliRun.Apb([.. common, "--strategies", "apb", "--json", apb]);
        Assert.True(code == 0, err);
        Assert.Contains("| apb x4 (retaining heads) |", table); // auto picked the heads in the model folder
        var apbRows = Accuracies(apb);
        double apbMean = apbRows.Values.Average();
        Assert.True(apbMean >= fullMean - 0.12, $"default APB x4: mean {apbMean:F3} against full's {fullMean:F3} (0.922 vs 0.933 on run 12)\n{table}");
        foreach (var task in new[] { "niah_single_1", "niah_multikey_1" })
            Assert.True(apbRows[task] >= rows[task] - 0.05, $"default APB x4: {task} {apbRows[task]:F3} against full's {rows[task]:F3} (bar: 5 points)\n{table}");
        Assert.True(apbRows["vt"] >= 0.75, $"default APB x4: vt {apbRows["vt"]:F3} (0.9 on run 12, full 1.0)\n{table}");
    }

    /// <summary>
    /// Issue #24's CI bar where APB runs with room to pass a chain: niah_single_1, niah_multikey_1 and vt at 4K, 6 samples
    /// each, 4 ranks, the default scorer (the retaining heads with the novelty term), every task within 5 points of full.
    /// With 6 samples one missed vt variable is 3.3 points and two are 6.7, so this allows APB one miss in 30. Measured on
    /// the CPU on run 12 of the model (run 9 the same): full 100 / 100 / 100, APB 100 / 100 / 100, also with the default
    /// passing budget (39 s for both on 2 cores, the command below; run 6: APB's vt 96.7); over 20 samples (the CPU,
    /// bench/results/train-run12-20261206/cpu-4k, and with the budget bench/results/apb-passing-budget-20261206/cpu-4k)
    /// APB's vt at 4K is 100:
    /// <c>apb eval ruler --model models/embedded --tasks niah_single_1,niah_multikey_1,vt --length 4k --samples 6 --ranks 4 --strategies full,apb</c>
    /// </summary>
    [Fact]
    public void DefaultApbKeepsNeedlesAndChainsWithinFivePointsOfFullAtFourK()
    {
        using var tmp = new TempDir();
        string json = tmp.File("ruler.json");
        var (code, table, err) = CliRun.Apb(["eval", "ruler", "--model", SmallModel, "--tasks", "niah_single_1,niah_multikey_1,vt",
            "--length", "4k", "--samples", "6", "--ranks", "4", "--strategies", "full,apb", "--json", json]);
        Assert.True(code == 0, err);
        Assert.Contains("apb x4 (retaining heads)", table);
        var byStrategy = new Dictionary<string, Dictionary<string, double>>();
        using (var doc = JsonDocument.Parse(File.ReadAllBytes(json)))
            foreach (var r in doc.RootElement.GetProperty("results").EnumerateArray())
            {
                string strategy = r.GetProperty("strategy").GetString()!;
                if (!byStrategy.TryGetValue(strategy, out var rows)) byStrategy[strategy] = rows = [];
                rows[r.GetProperty("task").GetString()!] = r.GetProperty("accuracy").GetDouble();
            }
        foreach (var task in new[] { "niah_single_1", "niah_multikey_1", "vt" })
        {
            double full = byStrategy["full"][task], apb = byStrategy["apb"][task];
            Assert.True(full >= 0.9, $"full attention at 4K: {task} {full:F3} (1.0 when committed)\n{table}");
            Assert.True(apb >= full - 0.05, $"default APB x4 at 4K: {task} {apb:F3} against full's {full:F3} (bar: 5 points)\n{table}");
        }
    }

    static Dictionary<string, double> Accuracies(string json)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        return doc.RootElement.GetProperty("results").EnumerateArray()
            .ToDictionary(r => r.GetProperty("task").GetString()!, r => r.GetProperty("accuracy").GetDouble());
    }

    [Fact]
    public void RulerCommandOnTheRandomFixtureReportsFractionsPerStrategyLengthAndTask()
    {
        using var tmp = new TempDir();
        string json = tmp.File("ruler.json");
        var (code, output, err) = CliRun.Apb("eval", "ruler", "--model", Repo.TinyModel, "--tasks", "niah_single_1,fwe", "--length", "640",
            "--samples", "1", "--strategies", "full,apb", "--ranks", "2", "--json", json);
        Assert.True(code == 0, err);
        Assert.Contains("| length | task | samples | full |", output);
        Assert.Contains("apb x2", output);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        // What made the file: the command to run it again, the seed, and the hashes of the files that decide the numbers.
        var root = doc.RootElement;
        Assert.Equal($"apb eval ruler --model {Repo.TinyModel} --tasks niah_single_1,fwe --length 640 --samples 1 --strategies full,apb --ranks 2 --json {json}",
            root.GetProperty("command").GetString());
        Assert.Equal(0, root.GetProperty("seed").GetInt32());
        Assert.Equal(RulerRun.ThisEngine, root.GetProperty("engine").GetString());
        Assert.Contains("+", RulerRun.ThisEngine);   // version + commit: the build that made the numbers
        Assert.True(root.GetProperty("complete").GetBoolean());
        Assert.Equal("cpu", root.GetProperty("device").GetString());
        Assert.Equal(Path.GetFullPath(Repo.TinyModel), root.GetProperty("model").GetString());
        var hashes = root.GetProperty("sha256").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
        Assert.Equal(["model.safetensors", "tokenizer.json"], hashes.Keys);
        foreach (var (name, hash) in hashes)
            Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(Repo.TinyModel, name)))), hash);
        var results = root.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(4, results.Count); // 2 strategies x 1 length x 2 tasks
        foreach (var r in results)
        {
            double acc = r.GetProperty("accuracy").GetDouble();
            Assert.InRange(acc, 0.0, 1.0);
            Assert.Equal(640, r.GetProperty("length").GetInt32());
            Assert.Equal(1, r.GetProperty("samples").GetInt32());
            Assert.Equal(r.GetProperty("strategy").GetString() == "apb" ? 2 : 1, r.GetProperty("ranks").GetInt32());
        }
    }

    [Fact]
    public void ARulerRunThatStopsEarlyKeepsTheRowsItFinishedInItsJson()
    {
        using var tmp = new TempDir();
        string json = tmp.File("ruler.json"), heads = tmp.File("heads.safetensors");
        File.WriteAllText(heads, "not a safetensors file");
        // Full attention runs first; APB's ranks then fail to read the heads. The full row was measured: it must stay.
        var (code, _, err) = CliRun.Apb("eval", "ruler", "--model", Repo.TinyModel, "--tasks", "niah_single_1", "--length", "640",
            "--samples", "1", "--strategies", "full,apb", "--ranks", "2", "--retaining-heads", heads, "--json", json);
        Assert.NotEqual(0, code);
        Assert.Contains("heads.safetensors", err);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        Assert.False(doc.RootElement.GetProperty("complete").GetBoolean());
        var row = Assert.Single(doc.RootElement.GetProperty("results").EnumerateArray());
        Assert.Equal("full", row.GetProperty("strategy").GetString());
        Assert.Equal(1, row.GetProperty("samples").GetInt32());
    }

    [Fact]
    public void ResumeRunsOnlyTheRowsAStoppedRunDidNotFinishAndRefusesAnotherRunsFile()
    {
        using var tmp = new TempDir();
        string json = tmp.File("ruler.json"), heads = tmp.File("heads.safetensors");
        File.WriteAllText(heads, "not a safetensors file");
        string[] Args(string strategies = "full,apb", string tasks = "niah_single_1", string samples = "1", string seed = "0") =>
            ["eval", "ruler", "--model", Repo.TinyModel, "--tasks", tasks, "--length", "640", "--samples", samples, "--seed", seed,
             "--strategies", strategies, "--ranks", "2", "--json", json];
        // A run that stops after full attention's row (APB's ranks fail on the heads file).
        Assert.NotEqual(0, CliRun.Apb([.. Args(), "--retaining-heads", heads]).Code);
        double fullSeconds = Rows(json).Single().GetProperty("seconds").GetDouble();

        // Another seed, no file to continue: refused, and the file is left as it was.
        byte[] before = File.ReadAllBytes(json);
        var bad = CliRun.Apb([.. Args(seed: "3"), "--resume"]);
        Assert.Contains("were run with --seed 0, this run with --seed 3", bad.Err);
        Assert.Equal(before, File.ReadAllBytes(json));
        bad = CliRun.Apb([.. Args()[..^2], "--resume"]);
        Assert.Equal(1, bad.Code);
        Assert.Contains("give --out FILE", bad.Err);

        // Resumed: full's row is kept as it was (its seconds are the first run's), APB's is made, the file is complete
        // and names both commands.
        var (code, output, err) = CliRun.Apb([.. Args(), "--resume"]);
        Assert.True(code == 0, err);
        Assert.Contains("1 row(s) kept, not run again", err);
        Assert.Contains("apb x2", output);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        var root = doc.RootElement;
        Assert.True(root.GetProperty("complete").GetBoolean());
        Assert.EndsWith("--resume", root.GetProperty("command").GetString());
        Assert.EndsWith("--retaining-heads " + heads, Assert.Single(root.GetProperty("earlier_commands").EnumerateArray()).GetString());
        var rows = root.GetProperty("results").EnumerateArray().ToDictionary(r => r.GetProperty("strategy").GetString()!, r => r);
        Assert.Equal(["full", "apb"], rows.Keys);
        Assert.Equal(fullSeconds, rows["full"].GetProperty("seconds").GetDouble());

        // Resumed again with full alone and another task: APB's row stays in the file, full's is kept, the new task runs.
        (code, _, err) = CliRun.Apb([.. Args(strategies: "full", tasks: "niah_single_1,vt"), "--resume"]);
        Assert.True(code == 0, err);
        Assert.Contains("1 row(s) kept, not run again; 1 row(s) of other strategies, tasks or lengths left in the file", err);
        var after = Rows(json).Select(r => (r.GetProperty("strategy").GetString(), r.GetProperty("task").GetString())).ToList();
        Assert.Equal([("apb", "niah_single_1"), ("full", "niah_single_1"), ("full", "vt")], after);
    }

    [Fact]
    public void ResumeWithMoreSamplesRunsOnlyTheSamplesARowLacksAndMatchesARunOfThemAll()
    {
        using var tmp = new TempDir();
        string json = tmp.File("grown.json"), whole = tmp.File("whole.json");
        string[] Args(string samples, string path, string tasks = "niah_single_1,vt") =>
            ["eval", "ruler", "--model", Repo.TinyModel, "--tasks", tasks, "--length", "640", "--samples", samples,
             "--strategies", "full,apb", "--ranks", "2", "--json", path];
        var (code, _, err) = CliRun.Apb(Args("1", json));
        Assert.True(code == 0, err);
        var first = Rows(json).ToDictionary(r => (r.GetProperty("strategy").GetString(), r.GetProperty("task").GetString()));

        // Grown to 3 samples a task: each row keeps its first score and seconds and adds two samples.
        (code, _, err) = CliRun.Apb([.. Args("3", json), "--resume"]);
        Assert.True(code == 0, err);
        Assert.Contains("0 row(s) kept, not run again; 4 row(s) of fewer samples kept and grown to 3", err);
        var grown = Rows(json);
        Assert.Equal(4, grown.Count);
        foreach (var r in grown)
        {
            var was = first[(r.GetProperty("strategy").GetString(), r.GetProperty("task").GetString())];
            Assert.Equal(3, r.GetProperty("samples").GetInt32());
            Assert.Equal(was.GetProperty("scores")[0].GetDouble(), r.GetProperty("scores")[0].GetDouble());
            Assert.True(r.GetProperty("seconds").GetDouble() > was.GetProperty("seconds").GetDouble());
        }

        // The same samples as a run of 3 from the start: sample i depends only on the seed, task, length and i.
        (code, _, err) = CliRun.Apb(Args("3", whole));
        Assert.True(code == 0, err);
        static string Scores(List<JsonElement> rows) => string.Join("; ", rows.Select(r =>
            $"{r.GetProperty("strategy").GetString()} {r.GetProperty("task").GetString()} {r.GetProperty("scores").GetRawText()} {r.GetProperty("accuracy").GetDouble()}"));
        Assert.Equal(Scores(Rows(whole)), Scores(grown));

        // Fewer samples than the file's rows: refused, the file left as it was.
        byte[] before = File.ReadAllBytes(json);
        var bad = CliRun.Apb([.. Args("2", json), "--resume"]);
        Assert.Equal(1, bad.Code);
        Assert.Contains("has 3 samples, this run asks 2: resume with --samples 3 or more", bad.Err);
        Assert.Equal(before, File.ReadAllBytes(json));
    }

    static List<JsonElement> Rows(string json)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        return [.. doc.RootElement.GetProperty("results").EnumerateArray().Select(r => r.Clone())];
    }

    [Fact]
    public void RulerRunsThatChangeApbsDefaultsNameTheVariantInTableAndJson()
    {
        using var tmp = new TempDir();
        string json = tmp.File("ruler.json");
        var (code, output, err) = CliRun.Apb("eval", "ruler", "--model", Repo.TinyModel, "--tasks", "niah_single_1", "--length", "640",
            "--samples", "1", "--strategies", "full,apb", "--ranks", "2", "--passing", "64", "--novelty-weight", "0.25", "--json", json);
        Assert.True(code == 0, err);
        // The fixture has no retaining heads, so APB ran (and is labelled with) the query-aware scorer.
        Assert.Contains("| apb x2 (query-aware scorer, novelty weight 0.25, l_p 64) |", output);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        var byStrategy = doc.RootElement.GetProperty("results").EnumerateArray()
            .ToDictionary(r => r.GetProperty("strategy").GetString()!, r => r);
        Assert.Equal("query-aware scorer, novelty weight 0.25, l_p 64", byStrategy["apb"].GetProperty("variant").GetString());
        Assert.False(byStrategy["full"].TryGetProperty("variant", out _), "full attention has no APB settings to name");
    }

    [Fact]
    public void RulerRowsRecordTheLengthsTheDefaultsChoseSoAFileSaysWhatRan()
    {
        using var tmp = new TempDir();
        string json = tmp.File("ruler.json");
        string[] Args(string samples, params string[] more) => ["eval", "ruler", "--model", Repo.TinyModel, "--tasks", "niah_single_1",
            "--length", "640", "--samples", samples, "--strategies", "full,star,apb", "--ranks", "2", "--json", json, .. more];
        var (code, _, err) = CliRun.Apb(Args("1"));
        Assert.True(code == 0, err);
        var rows = Rows(json).ToDictionary(r => r.GetProperty("strategy").GetString()!, r => r);
        Assert.False(rows["full"].TryGetProperty("settings", out _), "full attention's plan follows from nothing a default chose");
        Assert.Matches(@"^l_a \d+$", rows["star"].GetProperty("settings").GetString());
        // With the default lengths APB runs a passing budget of twice l_p (ApbDefaults.Budget).
        var m = System.Text.RegularExpressions.Regex.Match(rows["apb"].GetProperty("settings").GetString()!, @"^l_a \d+, l_p (\d+), passing budget (\d+)$");
        Assert.True(m.Success, rows["apb"].GetProperty("settings").GetString());
        Assert.Equal(2 * int.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value));
        Assert.Contains($"settings: apb x2 (query-aware scorer) at 640: {rows["apb"].GetProperty("settings").GetString()}", err);
        var shown = CliRun.Apb("eval", "show", json);
        Assert.Contains($"settings: apb x2 (query-aware scorer) at 640: {rows["apb"].GetProperty("settings").GetString()}", shown.Out);

        // A resumed run keeps the kept samples' settings and merges the new ones into them.
        (code, _, err) = CliRun.Apb(Args("2", "--resume"));
        Assert.True(code == 0, err);
        Assert.Matches(@"^l_a \d+(-\d+)?, l_p \d+(-\d+)?, passing budget \d+(-\d+)?$",
            Rows(json).Single(r => r.GetProperty("strategy").GetString() == "apb").GetProperty("settings").GetString());

        (code, _, err) = CliRun.Apb(["eval", "ruler", "--model", Repo.TinyModel, "--tasks", "niah_single_1", "--length", "640", "--samples", "1",
            "--strategies", "apb", "--ranks", "2", "--passing-budget", "0", "--json", json]);
        Assert.True(code == 0, err);
        Assert.EndsWith(", no passing budget", Rows(json).Single().GetProperty("settings").GetString());
    }

    [Fact]
    public void SettingsWordedAlikeMergeIntoRangesAndOthersStayApart()
    {
        Assert.Null(RulerHarness.MergeSettings([]));
        Assert.Equal("l_a 96-112, l_p 500-504, passing budget 1000-1008",
            RulerHarness.MergeSettings(["l_a 96, l_p 504, passing budget 1008", "l_a 112, l_p 500, passing budget 1000", "l_a 98, l_p 503, passing budget 1006"]));
        // A merged line merges again (a resumed row), and a differently worded one is kept apart, in the order first seen.
        Assert.Equal("l_a 90-112, l_p 500-504 | l_a 4096; ran as full attention",
            RulerHarness.MergeSettings(["l_a 96-112, l_p 500-504", "l_a 4096; ran as full attention", "l_a 90, l_p 501"]));
    }

    [Fact]
    public void ARulerRunWithAQueryFreeAnchorIsLabelledAndTheQueryAwareScorerIsRefusedBeforeAnySampleIsMade()
    {
        using var tmp = new TempDir();
        string json = tmp.File("ruler.json");
        var (code, output, err) = CliRun.Apb("eval", "ruler", "--model", SmallModel, "--tasks", "niah_single_1", "--length", "640",
            "--samples", "1", "--strategies", "apb", "--ranks", "2", "--anchor-query", "false", "--json", json);
        Assert.True(code == 0, err);
        Assert.Contains("| apb x2 (retaining heads, query-free anchor) |", output);
        Assert.Equal("retaining heads, query-free anchor", Rows(json).Single().GetProperty("variant").GetString());

        // The fixture has no retaining heads, so auto picks the query-aware scorer, which reads the query in the anchor.
        var refused = CliRun.Apb("eval", "ruler", "--model", Repo.TinyModel, "--tasks", "niah_single_1", "--length", "640",
            "--samples", "1", "--strategies", "full,apb", "--ranks", "2", "--anchor-query", "false");
        Assert.Equal(1, refused.Code);
        Assert.Contains("--anchor-query false", refused.Err);
        Assert.Contains("--scorer retaining", refused.Err);
        Assert.DoesNotContain("generated in", refused.Err);
    }

    [Fact]
    public void GenerateCommandWritesOneLinePerSampleAndExplainsBadInput()
    {
        using var tmp = new TempDir();
        string path = tmp.File("samples.jsonl");
        var (code, _, err) = CliRun.Apb("eval", "generate", "--tokenizer", Repo.TinyModel, "--tasks", "niah,vt", "--length", "512,1k", "--samples", "2", "--out", path);
        Assert.True(code == 0, err);
        var lines = File.ReadAllLines(path);
        Assert.Equal(9 * 2 * 2, lines.Length);
        using var first = JsonDocument.Parse(lines[0]);
        Assert.Equal("niah_single_1", first.RootElement.GetProperty("task").GetString());
        Assert.True(first.RootElement.GetProperty("context_ids").GetArrayLength() > 300);

        var bad = CliRun.Apb("eval", "generate", "--tasks", "nope", "--out", path);
        Assert.Equal(1, bad.Code);
        Assert.Contains("unknown task 'nope'", bad.Err);
        bad = CliRun.Apb("eval", "ruler", "--model", Repo.TinyModel, "--length", "64k");
        Assert.Equal(1, bad.Code);
        Assert.Contains("max_position_embeddings", bad.Err);
    }
}
