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
        var model = new ModelFlags();
        var device = CommonOptions.Device();
        var host = new Option<string>("--host") { Description = "address to listen on: 127.0.0.1 (this machine only), 0.0.0.0 (every interface), ::1, localhost", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0 = any free port)", DefaultValueFactory = _ => 8000 };
        var concurrency = new Option<int?>("--concurrency", "--max-batch", "--max-num-seqs") { Description = "requests generating at once, their decode steps batched together (default 16 on a GPU, 4 on the CPU)" };
        var maxNumTokens = new Option<int>("--max-num-tokens") { Description = "prompt tokens per prefill step: a longer prompt of full attention goes in chunks, with decode steps of the others between them", DefaultValueFactory = _ => 8192 };
        var maxModelLen = new Option<int?>("--max-model-len") { Description = "most tokens (prompt + completion) one request may use (default: the model's positions, or less where device memory says so)" };
        var gpus = new Option<int?>("--gpus") { Description = "serve on this many GPUs of this machine, one process each (the same as apb launch --nproc-per-node N -- serve --device cuda ...)" };
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
        var apiKey = new Option<string?>("--api-key") { Description = "key clients must send as \"Authorization: Bearer KEY\" (HTTP 401 otherwise; default: $APB_API_KEY, which ps does not show)" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "no per-request log lines on stderr" };
        var strategy = new StrategyFlags();
        var templateFlags = new ChatTemplateFlags();

        var cmd = new Command("serve", "serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics)")
        {
            device, host, port, concurrency, maxNumTokens, maxModelLen, gpus, maxQueue, defaultMax, maxBytes, name, allowedHosts, allowedOrigins, apiKey, quiet,
        };
        model.AddTo(cmd);
        strategy.AddTo(cmd);
        templateFlags.AddTo(cmd);
        cmd.SetAction(r => Cli.Guard(io, () =>
        {
            // One request's per-rank phase table has no place in a server: refused rather than accepted and ignored.
            if (strategy.Timings(r))
                throw new ApbException("--timings prints one request's per-rank phases (generate, logits); a server's timings are in /metrics " +
                    "(a TTFT histogram, prefill and decode seconds): drop --timings");
            if (r.GetValue(gpus) is int g) return Launch(io, g, r);
            string dev = r.GetValue(device)!;
            bool? fp8 = strategy.Fp8Attention(r);
            int n = r.GetValue(concurrency) ?? (dev == "cpu" ? 4 : 16);
            if (n < 1) throw new ApbException($"--concurrency must be at least 1, got {n}");
            if (r.GetValue(maxQueue) < 0) throw new ApbException($"--max-queue must be 0 or more, got {r.GetValue(maxQueue)}");
            if (r.GetValue(defaultMax) < 1) throw new ApbException($"--default-max-tokens must be at least 1, got {r.GetValue(defaultMax)}");
            if (r.GetValue(maxBytes) is < 1024) throw new ApbException($"--max-request-bytes must be at least 1024, got {r.GetValue(maxBytes)}");
            if (r.GetValue(maxModelLen) is < 2) throw new ApbException($"--max-model-len must be at least 2, got {r.GetValue(maxModelLen)}");
            using var bundle = CommonOptions.OpenModel(model.Get(r), io);
            if (fp8 == true) Backends.Qk8.RequireHeadDim(bundle.Config.HeadDim);
            var so = strategy.Options(r, bundle.Directory, anchorInsertAt: 0, bundle.Tokenizer.PadTokenId ?? 0) with { Timings = false };
            so.Validate(bundle.Config);

            // Every request is a sequence on one resident rank group: threads of this process (rank r on GPU r mod the
            // GPUs visible), or this process's rank of a launched group, whose rank 0 serves HTTP and the others follow.
            using var group = Runtime.Launch.LaunchEnvironment.Current is { } env
                ? LaunchedRank.Group(bundle, so, env, () => CommonOptions.Backend(dev, fp8))
                : Runtime.RankGroup.Create(bundle.Config, so, rank => CommonOptions.RankBackend(dev, rank, fp8),
                    b => bundle.LoadWeights(b));
            if (!group.IsLeader)
            {
                group.Follow();
                return 0;
            }
            using var scheduler = new BatchScheduler(group, bundle.Tokenizer, bundle.StopTokens.ToHashSet(),
                new SchedulerOptions { MaxBatch = n, PrefillChunk = r.GetValue(maxNumTokens), MaxModelLength = r.GetValue(maxModelLen) });
            var served = templateFlags.Apply(new ServedModel(r.GetValue(name) ?? ServedModel.DefaultId(bundle.Directory), bundle.Tokenizer,
                bundle.StopTokens, scheduler) { Strategy = Describe(group) + StrategyFlags.AttentionLabel(fp8) }, r);
            var log = r.GetValue(quiet) ? null : TextWriter.Synchronized(io.Err);
            var options = new ServerOptions
            {
                Host = r.GetValue(host)!, Port = r.GetValue(port), Concurrency = n, MaxQueue = r.GetValue(maxQueue),
                DefaultMaxTokens = r.GetValue(defaultMax), MaxRequestBytes = r.GetValue(maxBytes), Log = log,
                AllowedHosts = List(r.GetValue(allowedHosts)), AllowedOrigins = List(r.GetValue(allowedOrigins)),
                ApiKey = r.GetValue(apiKey) ?? (Environment.GetEnvironmentVariable("APB_API_KEY") is { Length: > 0 } k ? k : null),
            };
            if (ApbServer.ExposureWarning(options) is { } warning) io.Err.WriteLine(warning);
            return Serve(io, served, group, scheduler, bundle, dev, options).GetAwaiter().GetResult();
        }));
        return cmd;
    }

    /// <summary>`serve --gpus N`: this binary again under the launcher, one process per GPU, with the same options.</summary>
    static int Launch(Io io, int gpus, ParseResult r)
    {
        if (gpus < 1) throw new ApbException($"--gpus must be at least 1, got {gpus}");
        if (Runtime.Launch.LaunchEnvironment.Current is not null) throw new ApbException("--gpus under apb launch: the launcher already started one process per GPU; drop --gpus");
        var args = new List<string> { "serve" };
        var tokens = r.Tokens.Select(t => t.Value).ToList();
        for (int i = 1; i < tokens.Count; i++)
        {
            if (tokens[i] == "--gpus") { i++; continue; }
            if (tokens[i].StartsWith("--gpus=", StringComparison.Ordinal)) continue;
            if (tokens[i] == "--device") { i++; continue; }
            args.Add(tokens[i]);
        }
        args.AddRange(["--device", "cuda"]);
        if (!args.Contains("--strategy") && !args.Contains("-s")) args.AddRange(["--strategy", "auto"]);
        return LaunchCommand.Run(io, new Runtime.Launch.LaunchOptions
        {
            NprocPerNode = gpus, Executable = Environment.ProcessPath ?? throw new ApbException("cannot tell which binary this is"),
            ChildArgs = args,
        });
    }

    /// <summary>How the group runs requests, for the banner, /v1/models and the page.</summary>
    static string Describe(Runtime.RankGroup group)
    {
        var o = group.Options;
        string kv = o.KvCache == Backends.KvCacheDType.Auto ? "" : $", {Backends.KvCacheDTypes.Name(o.KvCache)} KV cache";
        return (o.Strategy == Strategies.StrategyKind.Full ? "full attention on one rank"
            : $"{Strategies.StrategyKinds.Name(o.Strategy)}{(o.Exact ? " (exact)" : Strategies.StrategyKinds.MayRunApb(o.Strategy) ? $" ({Strategies.ScorerChoice.Label(o.Scorer, o.NoveltyWeight)})" : "")} " +
              $"over {group.WorldSize} rank(s){(group.WorldSize > group.LocalRanks.Count ? " (processes)" : "")}" +
              ((Strategies.StrategyKinds.MayRunApb(o.Strategy) || o.Strategy == Strategies.StrategyKind.Star) && o.FallbackBelow > 0
                  ? $", full attention on one rank below {o.FallbackBelow} context tokens (--fallback-below)" : "")) + kv;
    }

    // "--allowed-origins a,b", "--allowed-origins a b" and the option given twice all mean the same.
    static string[] List(string[]? values) =>
        (values ?? []).SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToArray();

    static async Task<int> Serve(Io io, ServedModel served, Runtime.RankGroup group, BatchScheduler scheduler, ModelBundle bundle,
        string device, ServerOptions options)
    {
        await using var server = await ApbServer.StartAsync(served, options);
        io.Err.WriteLine($"model {Path.GetFullPath(bundle.Directory)} as '{served.Id}' on {device}; {served.Strategy}");
        io.Err.WriteLine($"max model length {served.MaxPositions} tokens; batch up to {options.Concurrency}, queue {options.MaxQueue}; " +
                         (scheduler.BudgetBytes > 0 ? $"KV cache budget {scheduler.BudgetBytes / (double)(1L << 30):F1} GiB per rank; " : "") +
                         $"{served.Tokenizer.ChatTemplate.Name} chat template");
        io.Err.WriteLine($"listening on {server.Address} (OpenAI base URL {server.Address}v1); Ctrl+C stops");
        // A failed rank (a dead process, a communicator error) ends the service: requests get 503, the server stops,
        // the process exits non-zero (under the launcher, which then stops the other ranks).
        using var failed = new CancellationTokenSource();
        group.Failed += why => failed.Cancel();
        await Task.WhenAny(server.WaitForShutdownAsync(), Task.Delay(Timeout.Infinite, failed.Token).ContinueWith(_ => { }));
        if (group.Failure is { } reason)
        {
            io.Err.WriteLine($"error: the ranks failed, stopping: {reason}");
            // The scheduler has failed every request with the reason (it heard of the failure first); give their
            // handlers a moment to write the 503s and error events before stopping cancels them ("shutting down").
            await Task.Delay(200);
            await server.StopAsync();
            return 1;
        }
        io.Err.WriteLine("stopped");
        return 0;
    }
}
