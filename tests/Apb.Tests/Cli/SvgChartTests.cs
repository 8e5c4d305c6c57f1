using System.Xml.Linq;
using Xunit;

namespace Apb.Tests.Cli;

/// <summary>`--chart out.svg` of eval ruler and bench prefill: well-formed SVG with axes, one series per strategy, a legend.</summary>
public class SvgChartTests
{
    static readonly XNamespace Svg = "http://www.w3.org/2000/svg";

    static XElement Load(string path)
    {
        var root = XDocument.Load(path).Root!;
        Assert.Equal(Svg + "svg", root.Name);
        return root;
    }

    static List<string> Texts(XElement root) => root.Descendants(Svg + "text").Select(t => t.Value).ToList();

    [Fact]
    public void EvalRulerDrawsBarsPerTaskAndStrategy()
    {
        using var tmp = new TempDir();
        string chart = tmp.File("ruler.svg");
        var (code, _, err) = CliRun.Apb("eval", "ruler", Repo.TinyModel, "--tasks", "niah_single_1,vt", "--length", "256", "--samples", "1",
            "--strategies", "full,star", "--ranks", "2", "--chart", chart);
        Assert.True(code == 0, err);
        var root = Load(chart);
        var texts = Texts(root);
        Assert.Contains("full", texts);           // the legend
        Assert.Contains("star x2", texts);
        Assert.Contains("niah_single_1", texts);  // categories on the x axis
        Assert.Contains("mean", texts);
        Assert.Contains("accuracy (%)", texts);   // the y axis label
        Assert.Contains("100", texts);            // the top tick
        // One bar per (task or mean) x strategy, each titled with its series; bars may be zero-height (accuracy 0).
        var bars = root.Descendants(Svg + "rect").Where(r => r.Element(Svg + "title") != null).ToList();
        Assert.Equal(6, bars.Count);
        Assert.All(bars, b => Assert.InRange(double.Parse(b.Attribute("height")!.Value, System.Globalization.CultureInfo.InvariantCulture), 0, 520));
    }

    [Fact]
    public void BenchPrefillDrawsALinePerStrategyOverLengths()
    {
        using var tmp = new TempDir();
        string chart = tmp.File("prefill.svg");
        var (code, output, err) = CliRun.Apb("bench", "prefill", "--shape", "tiny", "--lengths", "32,64", "--strategies", "full,ring", "--ranks", "2",
            "--query", "4", "--warmup", "0", "--repeats", "1", "--no-profile", "--out", tmp.File("b"), "--chart", chart, "-q");
        Assert.True(code == 0, err + output);
        var root = Load(chart);
        var texts = Texts(root);
        Assert.Contains("full x1", texts);
        Assert.Contains("ring x2", texts);
        Assert.Contains("32", texts);
        Assert.Contains("64", texts);
        Assert.Equal(2, root.Descendants(Svg + "polyline").Count());
        Assert.Equal(4, root.Descendants(Svg + "circle").Count());
    }

    [Fact]
    public void AChartPathInAMissingFolderIsRefusedBeforeTheRun() =>
        HostileCliTests.AssertUserError(CliRun.Apb("bench", "prefill", "--shape", "tiny", "--lengths", "32", "--chart", "/no/such/dir/c.svg"),
            "the folder /no/such/dir does not exist");
}
