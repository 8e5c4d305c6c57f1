using System.Text.Json;
using Apb.Backends.Cpu;
using Apb.Engine;
using Apb.Eval;
using Apb.Runtime;
using Apb.Server;
using Apb.Serving;
using Apb.Strategies;
using OpenQA.Selenium;
using Xunit;

namespace Apb.Tests.Server;

/// <summary>
/// The page at / in headless Chromium: a pasted document and a typed question give the server's own answer, streamed,
/// with the timing line and APB's per-rank table; Stop ends the generation on the server too; the server's error
/// messages reach the user. Set APB_PAGE_SCREENSHOT to a .png path to keep a screenshot of the answered page
/// (tools/page_screenshot.sh makes docs/images/page.png so).
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class PageTests(PageBrowser browser) : IClassFixture<PageBrowser>
{
    const string Chat = "/v1/chat/completions";
    const string Strategy = "apb (query-aware scorer) over 2 rank(s)";

    [BrowserFact]
    public async Task AnswersAPastedDocumentWithTheTimingLineAndTheRankTable()
    {
        // The embedded retrieval model with APB over two CPU ranks, batched as apb serve runs it, on a 512-token needle task.
        using var bundle = ModelBundle.Open(Repo.EmbeddedModel);
        var sample = new SampleGenerator(bundle.Tokenizer).Generate(RulerTasks.Get("niah_single_2"), 512, seed: 0, index: 0).Sample;
        using var group = RankGroup.Create(bundle.Config,
            new StrategyOptions { Strategy = StrategyKind.Apb, Ranks = 2, FallbackBelow = 0, PadTokenId = bundle.Tokenizer.PadTokenId ?? 0 },
            _ => new CpuBackend(), bundle.LoadWeights);
        using var scheduler = new BatchScheduler(group, bundle.Tokenizer, bundle.StopTokens.ToHashSet(), new SchedulerOptions { MaxBatch = 1 });
        var model = new ServedModel(Harness.Id, bundle.Tokenizer, bundle.StopTokens, scheduler) { Strategy = Strategy };
        await using var server = await Harness.StartAsync(model);
        using var http = Harness.Http(server);

        string document = sample.Context, question = sample.Query.Trim();
        var d = await OpenAsync(server);
        Assert.Contains(Strategy, d.Content("model"));

        d.Paste("document", document);
        int documentTokens = await TokenCountAsync(http, document);
        await d.Until(x => x.ById("document-count").GetDomAttribute("data-tokens") == documentTokens.ToString(), $"the document's count of {documentTokens} tokens");
        var ask = d.ById("question");
        ask.SendKeys(question);
        ask.SendKeys(Keys.Enter); // the keyboard asks: Enter in the question submits the form
        await d.Until(x => x.Content("timing").Contains("TTFT"), "the timing line", seconds: 120);

        // Exactly the server's answer to the same request (greedy, so the same text), and where the time went.
        var expected = await Harness.PostAsync(http, Chat, JsonSerializer.Serialize(new
        {
            messages = new[] { new { role = "user", content = document.TrimEnd() + "\n\n" + question } }, max_tokens = 256, temperature = 0,
        }));
        Assert.Equal(200, expected.Status);
        string answer = expected.Body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        Assert.NotEqual("", answer.Trim());
        Assert.Equal(answer, d.Content("answer"));
        string timing = d.Content("timing");
        Assert.Matches(@"TTFT [\d.]+ m?s", timing);
        Assert.Matches(@"prefill [\d,]+ tokens in [\d.]+ m?s \([\d,.]+ tok/s\)", timing);
        Assert.Contains("ran as apb (query-aware scorer), 2 rank(s)", timing);
        Assert.True(d.ById("ranks-box").Displayed, "the per-rank table is hidden");
        var rows = d.FindElements(By.CssSelector("#ranks tbody tr"));
        Assert.Equal(["0", "1", "max/mean"], rows.Select(r => r.FindElement(By.TagName("td")).Text));
        Assert.Contains("communication ms", d.ById("ranks").FindElement(By.TagName("thead")).Text);
        Assert.True(d.ById("send").Enabled && !d.ById("stop").Enabled, "after the answer, Ask is enabled again and Stop is not");

        if (Environment.GetEnvironmentVariable("APB_PAGE_SCREENSHOT") is { Length: > 0 } path)
        {
            // The whole page in one picture: a viewport as tall as the page, then back to the window's own.
            long height = (long)d.Script("return document.documentElement.scrollHeight;")!;
            var chrome = (OpenQA.Selenium.Chromium.ChromiumDriver)d;
            chrome.ExecuteCdpCommand("Emulation.setDeviceMetricsOverride",
                new() { ["width"] = 1100, ["height"] = height, ["deviceScaleFactor"] = 1, ["mobile"] = false });
            ((ITakesScreenshot)d).GetScreenshot().SaveAsFile(path);
            chrome.ExecuteCdpCommand("Emulation.clearDeviceMetricsOverride", new());
        }

        // Accessible basics: every field has a label, and at phone width nothing runs off the side.
        Assert.Equal(0L, d.Script("return [...document.querySelectorAll('input, textarea')].filter(f => f.labels.length === 0).length;"));
        d.Manage().Window.Size = new System.Drawing.Size(390, 844);
        await d.Until(x => (long)x.Script("return window.innerWidth;")! <= 400, "the phone-width window");
        Assert.True((bool)d.Script("return document.documentElement.scrollWidth <= window.innerWidth;")!,
            "the page is wider than a 390-pixel phone screen");
    }

    [BrowserFact]
    public async Task StopEndsALongAnswerOnThePageAndOnTheServer()
    {
        var probe = new ProbeSessions { DecodeDelayMs = 40 };
        await using var server = await Harness.StartAsync(Harness.Model(probe.New));
        var d = await OpenAsync(server);
        // The document from a file, as the file picker (and a drop) gives it.
        string text = string.Join(" ", Enumerable.Repeat("The mill by the river grinds grain for the village.", 20)) + "\n";
        string file = Path.Combine(Path.GetTempPath(), $"apb-page-{Guid.NewGuid():N}.md");
        File.WriteAllText(file, text);
        try
        {
            d.ById("file").SendKeys(file);
            await d.Until(x => (string?)x.Script("return document.getElementById('document').value;") == text, "the file in the document box");
        }
        finally { File.Delete(file); }
        d.Paste("max-tokens", "2000");
        d.ById("question").SendKeys("Tell me everything about the mill.");
        d.Press("send");

        // Text on the page while the request still runs: the answer streams.
        await d.Until(x => x.Content("answer").Length >= 10 && x.ById("stop").Enabled, "streamed text while the answer runs");
        d.Press("stop");
        await d.Until(x => x.Content("timing").StartsWith("Stopped"), "the page to say it stopped");
        string shown = d.Content("answer");

        // The server saw the client go: the session is freed and no decode step runs after it.
        await Harness.WaitUntilAsync(() => probe.Live == 0, "the server to end the stopped generation");
        int decodes = probe.Decodes;
        Assert.True(decodes < 1000, $"{decodes} decode steps: the generation ran to its end instead of stopping");
        await Task.Delay(400);
        Assert.Equal(decodes, probe.Decodes);
        Assert.Equal(shown, d.Content("answer"));
        Assert.Equal(1, server.Metrics.Requests(Chat, 499));
        Assert.True(d.ById("send").Enabled && !d.ById("stop").Enabled, "after Stop, Ask is enabled again and Stop is not");
    }

    [BrowserFact]
    public async Task ShowsTheServersErrorMessages()
    {
        var probe = new ProbeSessions();
        await using var server = await Harness.StartAsync(Harness.Model(probe.New), new ServerOptions { Concurrency = 1, MaxQueue = 0 });
        using var http = Harness.Http(server);
        var d = await OpenAsync(server);
        // Only text files become the document.
        string binary = Path.Combine(Path.GetTempPath(), $"apb-page-{Guid.NewGuid():N}.bin");
        File.WriteAllBytes(binary, [0, 1, 2, 3]);
        try
        {
            d.ById("file").SendKeys(binary);
            await d.Until(x => x.Content("error").Contains("is not a text file: drop or open a .txt or .md file"), "the refusal of a binary file");
        }
        finally { File.Delete(binary); }
        Assert.Equal("", d.Script("return document.getElementById('document').value;"));

        d.Paste("document", "A short note about rivers.");
        d.ById("question").SendKeys("What is it about?");

        // Too long for the context: the 400's message, word for word. The box still shows the file's refusal, so the
        // wait is for the 400's own text (waiting for the box to show would return at once, before the answer).
        var refused = await Harness.PostAsync(http, Chat,
            """{"messages": [{"role": "user", "content": "A short note about rivers.\n\nWhat is it about?"}], "max_tokens": 100000}""");
        Assert.Equal(400, refused.Status);
        string tooLong = refused.Body.GetProperty("error").GetProperty("message").GetString()!;
        d.Paste("max-tokens", "100000");
        d.Press("send");
        await d.Until(x => x.Content("error") == tooLong, "the 400's message");
        Assert.Equal("alert", d.ById("error").GetDomAttribute("role"));

        // Busy: the one slot is held and there is no queue, so the page's request gets the 429's message. Ask must be
        // enabled again (the 400's request has ended) before the click.
        d.Paste("max-tokens", "4");
        await d.Until(x => x.ById("send").Enabled && (string?)x.Script("return document.getElementById('max-tokens').value;") == "4",
            "Ask enabled and max tokens 4");
        probe.Gate.Reset();
        try
        {
            var held = Harness.PostAsync(http, Chat, """{"messages": [{"role": "user", "content": "Hold on."}], "max_tokens": 2}""");
            await Harness.WaitUntilAsync(() => server.Runner.Queue.Running == 1, "the held request to take the slot");
            d.Press("send");
            await d.Until(x => x.Content("error").Contains("the server is busy"), "the 429's message");
            probe.Gate.Set();
            Assert.Equal(200, (await held).Status);
        }
        finally { probe.Gate.Set(); }
    }

    /// <summary>The page of <paramref name="server"/> in a desktop-sized window, once it has read the model card.</summary>
    async Task<IWebDriver> OpenAsync(ApbServer server)
    {
        var d = browser.Driver;
        d.Manage().Window.Size = new System.Drawing.Size(1100, 1000);
        d.Navigate().GoToUrl(server.Address);
        await d.Until(x => x.Content("model").StartsWith($"Model {Harness.Id} ·"), "the model line");
        return d;
    }

    static async Task<int> TokenCountAsync(HttpClient http, string text)
    {
        var (status, body) = await Harness.PostAsync(http, "/tokenize", JsonSerializer.Serialize(new { prompt = text, add_special_tokens = false }));
        Assert.Equal(200, status);
        return body.GetProperty("count").GetInt32();
    }
}
