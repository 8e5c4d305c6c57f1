using System.ClientModel;
using System.Net.Http.Headers;
using Apb.Server;
using OpenAI;
using OpenAI.Chat;
using Xunit;

namespace Apb.Tests.Server;

/// <summary>`apb serve --api-key`: the OpenAI client's key is checked on the API; /health and /metrics stay open.</summary>
[Collection(ServerCollection.Name)]
public class ApiKeyTests
{
    const string Key = "sk-test-0123456789";

    static ChatClient Client(ApbServer server, string key) =>
        new("embedded", new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(server.Address, "v1"), NetworkTimeout = TimeSpan.FromSeconds(60) });

    [Fact]
    public async Task TheRightKeyIsServedAndAWrongOrMissingOneGets401()
    {
        await using var server = await Harness.StartAsync(Harness.Model(), new ServerOptions { ApiKey = Key });
        ChatCompletion ok = await Client(server, Key).CompleteChatAsync([new UserChatMessage("Hi")], new ChatCompletionOptions { MaxOutputTokenCount = 2 });
        Assert.InRange(ok.Usage.OutputTokenCount, 1, 2);

        var wrong = await Assert.ThrowsAsync<ClientResultException>(() =>
            Client(server, Key + "x").CompleteChatAsync([new UserChatMessage("Hi")], new ChatCompletionOptions { MaxOutputTokenCount = 2 }));
        Assert.Equal(401, wrong.Status);
        Assert.Contains("Incorrect API key", wrong.Message);

        using var http = Harness.Http(server);
        var (status, body) = await Harness.PostAsync(http, "/v1/chat/completions", """{"messages": [{"role": "user", "content": "Hi"}]}""");
        Assert.Equal(401, status);
        Assert.Equal("invalid_api_key", body.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("didn't provide an API key", body.GetProperty("error").GetProperty("message").GetString());
        using (var models = await http.GetAsync("/v1/models"))
        {
            Assert.Equal(401, (int)models.StatusCode);
            Assert.Equal("Bearer", models.Headers.WwwAuthenticate.Single().Scheme);
        }
        var (tokenize, _) = await Harness.PostAsync(http, "/tokenize", """{"prompt": "Hi"}""");
        Assert.Equal(401, tokenize);
        // Probes and scrapers carry no key; paths outside the API are not behind it either.
        Assert.Equal(200, (int)(await http.GetAsync("/health")).StatusCode);
        Assert.Equal(200, (int)(await http.GetAsync("/metrics")).StatusCode);
        Assert.Equal(404, (int)(await http.GetAsync("/no-such-page")).StatusCode);
        using var authorized = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        authorized.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        Assert.Equal(200, (int)(await http.SendAsync(authorized)).StatusCode);
    }

    [Theory]
    [InlineData("0.0.0.0", null, true)]
    [InlineData("::", null, true)]
    [InlineData("192.168.1.20", null, true)]
    [InlineData("0.0.0.0", Key, false)]
    [InlineData("127.0.0.1", null, false)]
    [InlineData("::1", null, false)]
    [InlineData("localhost", null, false)]
    public void ListeningBeyondThisMachineWithoutAKeyIsWarnedAbout(string host, string? key, bool warned)
    {
        string? warning = ApbServer.ExposureWarning(new ServerOptions { Host = host, ApiKey = key });
        Assert.Equal(warned, warning is not null);
        if (warned) Assert.Contains("APB_API_KEY", warning);
    }

    [Fact]
    public async Task AnEmptyKeyIsRefusedAtStart()
    {
        using var model = Harness.Model();
        var e = await Assert.ThrowsAsync<ApbException>(() => Harness.StartAsync(model, new ServerOptions { ApiKey = " " }));
        Assert.Contains("--api-key is empty", e.Message);
    }
}
