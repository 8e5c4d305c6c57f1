using Apb.Checkpoints;
using Xunit;

namespace Apb.Tests.Checkpoints;

/// <summary>generation_config.json is optional, but a malformed one is an error naming the file and the field.</summary>
public class GenerationConfigTests : IDisposable
{
    readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    string Write(string json)
    {
        string p = _tmp.File("generation_config.json");
        File.WriteAllText(p, json);
        return p;
    }

    [Fact]
    public void AbsentFileIsEmpty() =>
        Assert.Same(GenerationConfig.Empty, GenerationConfig.Load(_tmp.File("generation_config.json")));

    [Theory]
    [InlineData("llama-tiny", 6)]
    [InlineData("qwen2-tiny", 2)]
    [InlineData("llama-headdim-sharded", 6)]
    public void Fixtures(string name, int eos)
    {
        var g = GenerationConfig.Load(Path.Combine(Repo.Fixture(name), "generation_config.json"));
        Assert.Equal(new[] { eos }, g.EosTokenIds);
        Assert.Null(g.Temperature);
        Assert.Null(g.DoSample);
    }

    [Fact]
    public void AllFieldsAndNulls()
    {
        var g = GenerationConfig.Load(Write("""{"eos_token_id": [151645, 151643], "temperature": 0.7, "top_p": 0.8, "top_k": 20, "do_sample": true, "repetition_penalty": "anything"}"""));
        Assert.Equal(new[] { 151645, 151643 }, g.EosTokenIds);
        Assert.Equal((0.7, 0.8, 20, true), (g.Temperature, g.TopP, g.TopK, g.DoSample));
        var n = GenerationConfig.Load(Write("""{"eos_token_id": null, "temperature": null, "top_k": null}"""));
        Assert.Empty(n.EosTokenIds);
        Assert.Null(n.TopK);
    }

    [Theory]
    [InlineData("{\"eos_token_id\": 2,", "not valid JSON")]
    [InlineData("", "not valid JSON")]
    [InlineData("[2]", "expected a JSON object of generation settings but found Array")]
    [InlineData("{\"eos_token_id\": \"2\"}", "'eos_token_id' should be an integer but is \"2\"")]
    [InlineData("{\"eos_token_id\": [2, \"x\"]}", "'eos_token_id' should be an integer but is \"x\"")]
    [InlineData("{\"eos_token_id\": 1.5}", "'eos_token_id' should be an integer but is 1.5")]
    [InlineData("{\"eos_token_id\": 99999999999}", "'eos_token_id' should be an integer")]
    [InlineData("{\"eos_token_id\": {}}", "'eos_token_id' should be an integer")]
    [InlineData("{\"eos_token_id\": -1}", "'eos_token_id' holds -1; token ids are 0 or more")]
    [InlineData("{\"eos_token_id\": [2, -7]}", "'eos_token_id' holds -7")]
    [InlineData("{\"temperature\": \"0.7\"}", "'temperature' should be a number but is \"0.7\"")]
    [InlineData("{\"top_p\": 1e999}", "'top_p' should be a number")]
    [InlineData("{\"top_k\": 2.5}", "'top_k' should be an integer but is 2.5")]
    [InlineData("{\"do_sample\": \"yes\"}", "'do_sample' should be true or false but is \"yes\"")]
    public void Malformed(string json, string message)
    {
        string p = Write(json);
        Expect.Error(() => GenerationConfig.Load(p), p, message, "fix or delete the file");
    }
}
