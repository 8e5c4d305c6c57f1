using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using Xunit;

namespace Apb.Tests.Server;

/// <summary>
/// Headless Chromium under Selenium for the page's tests: Debian's chromium and chromium-driver (.ci/run installs
/// them). Started on first use, one browser for a test class.
/// </summary>
public sealed class PageBrowser : IDisposable
{
    /// <summary>Set by .ci/run: there a missing browser fails the tests instead of skipping them.</summary>
    public const string RequiredVariable = "APB_BROWSER_TESTS";

    static readonly string[] Browsers = ["chromium", "chromium-browser", "google-chrome"];
    readonly Lazy<ChromeDriver> _driver = new(Start);

    public ChromeDriver Driver => _driver.Value;

    /// <summary>Null when the browser and its driver are installed, else what is missing and how to install it.</summary>
    public static string? Missing()
    {
        if (Browser() is null || Which("chromedriver") is null)
            return "the page's browser tests need Chromium and its WebDriver: `apt-get install chromium chromium-driver` " +
                   $"(Debian; .ci/run installs them and sets {RequiredVariable}=required so that CI runs these tests)";
        return null;
    }

    static string? Browser() => Browsers.Select(Which).FirstOrDefault(p => p != null);

    static string? Which(string name) => ToolPath.Which(name);

    static ChromeDriver Start()
    {
        if (Missing() is { } why) throw new InvalidOperationException(why);
        var driverPath = Which("chromedriver")!;
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(driverPath)!, Path.GetFileName(driverPath));
        service.HideCommandPromptWindow = true;
        service.SuppressInitialDiagnosticInformation = true;
        var options = new ChromeOptions { BinaryLocation = Browser()! };
        // --no-sandbox: CI and this machine run as root, where Chromium's sandbox refuses to start.
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            "--window-size=1100,1000", "--force-device-scale-factor=1", "--lang=en-US");
        return new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
    }

    public void Dispose()
    {
        if (_driver.IsValueCreated) _driver.Value.Quit();
    }
}

/// <summary>A fact that needs <see cref="PageBrowser"/>: skipped, saying what to install, where it is missing, except in CI.</summary>
public sealed class BrowserFactAttribute : FactAttribute
{
    public BrowserFactAttribute()
    {
        if (PageBrowser.Missing() is { } why && Environment.GetEnvironmentVariable(PageBrowser.RequiredVariable) != "required") Skip = why;
    }
}

/// <summary>What the tests do on the page: read and set its fields, wait for it.</summary>
static class PageActions
{
    public static IWebElement ById(this IWebDriver d, string id) => d.FindElement(By.Id(id));

    /// <summary>
    /// Presses a button: it must be shown and enabled, then it gets the click through its own activation (a script's
    /// click(), which submits the form as a user's click does, constraint checks included). WebDriver's pointer click,
    /// dispatched at the button's coordinates, was lost twice in CI under load (the page never saw it: no request went
    /// out, and the test waited 60 s for an answer to it).
    /// </summary>
    public static void Press(this IWebDriver d, string id)
    {
        var button = d.ById(id);
        Assert.True(button.Displayed && button.Enabled, $"the {id} button is not shown and enabled, so a user could not press it");
        ((IJavaScriptExecutor)d).ExecuteScript("arguments[0].click();", button);
    }

    /// <summary>An element's text as the DOM holds it (Selenium's Text trims and folds white space).</summary>
    public static string Content(this IWebDriver d, string id) =>
        (string)((IJavaScriptExecutor)d).ExecuteScript("return document.getElementById(arguments[0]).textContent;", id)!;

    /// <summary>Puts text into a field as a paste does: the value changes and an input event fires.</summary>
    public static void Paste(this IWebDriver d, string id, string text) =>
        ((IJavaScriptExecutor)d).ExecuteScript(
            "const f = document.getElementById(arguments[0]); f.focus(); f.value = arguments[1];" +
            "f.dispatchEvent(new InputEvent('input', { bubbles: true, inputType: 'insertFromPaste' }));", id, text);

    public static object? Script(this IWebDriver d, string script, params object[] args) =>
        ((IJavaScriptExecutor)d).ExecuteScript(script, args);

    public static async Task Until(this IWebDriver d, Func<IWebDriver, bool> condition, string what, double seconds = 60)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition(d))
        {
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"timed out after {seconds} s waiting for {what}; the page's error box says '{d.Content("error")}', " +
                            $"its timing line '{d.Content("timing")}'");
            await Task.Delay(25);
        }
    }
}
