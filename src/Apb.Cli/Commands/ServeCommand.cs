using System.CommandLine;
using Apb.Engine;
using Apb.Server;
using Apb.Serving;

namespace Apb.Cli.Commands;

/// <summary>`apb serve`: the model behind an OpenAI-compatible HTTP API until Ctrl+C.</summary>
static class ServeCommand
{
    public static Command Create(Io io)
    {
        var model = CommonOptions.Model();
        var device = CommonOptions.Device();
        var host = new Option<string>("--host") { Description = "address to listen on: 127.0.0.1 (this machine only), 0.0.0.0 (every interface), ::1, localhost", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0 = any free port)", DefaultValueFactory = _ => 8000 };
        var concurrency = new Option<int>("--concurrency") { Description = "requests generating at once (default 1: on the CPU one request already uses every core)", DefaultValueFactory = _ => 1 };
        var maxQueue = new Option<int>("--max-queue") { Description = "requests that may wait for a slot; one more gets HTTP 429 at once", DefaultValueFactory = _ => 64 };
        var defaultMax = new Option<int>("--default-max-tokens") { Description = "max_tokens for chat requests that give none", DefaultValueFactory = _ => 1024 };
        var maxBytes = new Option<long?>("--max-request-bytes") { Description = "largest request body accepted (HTTP 413 above it; default: 32 bytes per token of the model's context, 1 to 64 MiB)" };
        var name = new Option<string?>("--served-model-name") { Description = "the model name clients send (default: the model folder's name)" };
        var allowedHosts = new Option<string[]>("--allowed-hosts")
        {
            Description = "host names clients may reach the server by, besides its IP addresses, localhost and the machine's name (comma list; * = any): other Host headers get 403, which stops DNS rebinding",
            AllowMultipleArgumentsPerToken = true,
        };
        var allowedOrigins = new Option<string[]>("--allowed-origins")
        {
            Description = "web origins (scheme://host[:port], comma list; * = any) whose pages may call the API, answered with CORS headers; requests from other origins get 403 (default: none)",
            AllowMultipleArgumentsPerToken = true,
        };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "no per-request log lines on stderr" };
        var strategy = new StrategyFlags();
        var templateFlags = new ChatTemplateFlags();

        var cmd = new Command("serve", "serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics)")
        {
            model, device, host, port, concurrency, maxQueue, defaultMax, maxBytes, name, allowedHosts, allowedOrigins, quiet,
        };
        strategy.AddTo(cmd);
        templateFlags.AddTo(cmd);
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            int n = r.GetValue(concurrency);
            if (n < 1) throw new ApbException($"--concurrency must be at least 1, got {n}");
            if (r.GetValue(maxQueue) < 0) throw new ApbException($"--max-queue must be 0 or more, got {r.GetValue(maxQueue)}");
            if (r.GetValue(defaultMax) < 1) throw new ApbException($"--default-max-tokens must be at least 1, got {r.GetValue(defaultMax)}");
            if (r.GetValue(maxBytes) is < 1024) throw new ApbException($"--max-request-bytes must be at least 1024, got {r.GetValue(maxBytes)}");
            string dev = r.GetValue(device)!;
            using var bundle = CommonOptions.OpenModel(r.GetValue(model), io);
            var so = strategy.Options(r, anchorInsertAt: 0, bundle.Tokenizer.PadTokenId ?? 0);
            so.Validate(bundle.Config);
            // Full attention on one rank keeps a pool of model replicas; a strategy runs every request as a sequence on
            // one resident rank group (weights loaded once), with APB's anchor insertion point from the request's chat header.
            using var group = so.Strategy == Strategies.StrategyKind.Full && so.Ranks == 1 ? null
                : Runtime.RankGroup.Create(bundle.Config, so with { Timings = false }, _ => CommonOptions.Backend(dev),
                    b => bundle.LoadWeights(b));
            var served = group is null
                ? ServedModel.Local(bundle, () => CommonOptions.Backend(dev), n, r.GetValue(name))
                : new ServedModel(r.GetValue(name) ?? ServedModel.DefaultId(bundle.Directory), bundle.Tokenizer,
                    bundle.Config.MaxPositionEmbeddings, bundle.StopTokens,
                    (prompt, capacity) => new Runtime.GroupSession(group, prompt.AnchorInsertAt, capacity - prompt.Count))
                {
                    // A prompt the group cannot run (fewer context tokens than ranks, a query longer than APB's anchor) is
                    // a 400 before it takes a slot, by the plan its prefill would make.
                    CheckPrompt = prompt => Runtime.GroupSession.CheckPrefill(group, prompt.Context.Count, prompt.Query.Count, prompt.AnchorInsertAt),
                };
            served = templateFlags.Apply(served, r);
            var log = r.GetValue(quiet) ? null : TextWriter.Synchronized(io.Err);
            var options = new ServerOptions
            {
                Host = r.GetValue(host)!, Port = r.GetValue(port), Concurrency = n, MaxQueue = r.GetValue(maxQueue),
                DefaultMaxTokens = r.GetValue(defaultMax), MaxRequestBytes = r.GetValue(maxBytes), Log = log,
                AllowedHosts = List(r.GetValue(allowedHosts)), AllowedOrigins = List(r.GetValue(allowedOrigins)),
            };
            return Serve(io, served, bundle, dev, options).GetAwaiter().GetResult();
        }));
        return cmd;
    }

    // "--allowed-origins a,b", "--allowed-origins a b" and the option given twice all mean the same.
    static string[] List(string[]? values) =>
        (values ?? []).SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToArray();

    static async Task<int> Serve(Io io, ServedModel served, ModelBundle bundle, string device, ServerOptions options)
    {
        await using var server = await ApbServer.StartAsync(served, options);
        io.Err.WriteLine($"model {Path.GetFullPath(bundle.Directory)} as '{served.Id}' on {device}; context {served.MaxPositions} tokens; " +
                         $"{served.Tokenizer.ChatTemplate.Name} chat template; concurrency {options.Concurrency}, queue {options.MaxQueue}");
        io.Err.WriteLine($"listening on {server.Address} (OpenAI base URL {server.Address}v1); Ctrl+C stops");
        await server.WaitForShutdownAsync();
        io.Err.WriteLine("stopped");
        return 0;
    }
}
