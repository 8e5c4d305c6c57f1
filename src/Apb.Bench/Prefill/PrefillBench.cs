using System.Diagnostics;
using Apb.Backends;
using Apb.Backends.Cuda;
using Apb.Comms;
using Apb.Diagnostics;
using Apb.Model;
using Apb.Runtime;
using Apb.Runtime.Launch;
using Apb.Strategies;
using Apb.Strategies.Apb;

namespace Apb.Bench.Prefill;

/// <summary>
/// Prefill seconds per strategy and context length on a random-weight model of a named shape (or a checkpoint): the
/// slowest rank's wall time per run (median reported), an instrumented run for the per-phase breakdown, per-rank
/// imbalance and peak device memory, predicted memory checked before a case runs. Results go to prefill.json and
/// prefill.md after every case (a crash keeps what was measured). On GPUs the ranks are processes (`apb launch`);
/// `full` runs without the launcher on one GPU. On the CPU, in-process ranks.
/// </summary>
public sealed class PrefillBench : IDisposable
{
    /// <summary>Per rank: the phases' ms, then total ms, MB sent, MB received, attention GFLOP.</summary>
    static readonly int K = Profile.Phases.Length + 4;

    readonly PrefillSettings _o;
    readonly TextWriter _out, _log;
    readonly LaunchEnvironment? _env = LaunchEnvironment.Current;
    readonly IBackend _backend;
    readonly CudaBackend? _cuda;
    ICommunicator? _comm;
    string? _commDead;
    BenchModel _model = null!;
    readonly List<PrefillCase> _results = [];
    readonly Stopwatch _clock = Stopwatch.StartNew();

    /// <param name="output">the results table</param>
    /// <param name="log">progress lines (rank 0 only)</param>
    public PrefillBench(PrefillSettings settings, TextWriter output, TextWriter log)
    {
        _o = settings; _out = output; _log = log;
        if (_o.Strategies.Length == 0) throw new ApbException("--strategies is empty");
        if (_env != null) ProcessGroup.DieWithLauncher(_env);
        _backend = settings.NewBackend();
        _cuda = _backend as CudaBackend;
    }

    int Rank => _comm?.Rank ?? 0;
    bool Reports => Rank == 0;

    void Log(string line)
    {
        if (Reports) { _log.WriteLine($"[bench {_clock.Elapsed.TotalSeconds,6:F1}s] {line}"); _log.Flush(); }
    }

    /// <summary>Runs every (length, strategy) case; 1 when any case ended in an error (oom and skipped are not errors).</summary>
    public int Run()
    {
        if (_env != null)
        {
            if (_cuda == null)
                throw new ApbException($"apb launch runs one rank per GPU: pass --device cuda (got {_o.Device}); CPU ranks run in one process with --ranks N");
            _comm = ProcessGroup.ConnectNccl(_env, _cuda, _env.CollectiveTimeout ?? InProcessGroup.DefaultTimeout);
        }
        var sw = Stopwatch.StartNew();
        _model = BenchModel.Open(_o.Shape, _o.Model, _backend, _o.Seed);
        Log($"{_model.Name}: {_model.Config.ParameterCount / 1e9:F2}B parameters on {_backend.Name} in {sw.Elapsed.TotalSeconds:F1} s" +
            (_comm != null ? $", rank 0 of {_comm.WorldSize} (NCCL)" : ""));

        foreach (int n in _o.Lengths)
            foreach (var s in _o.Strategies)
            {
                var result = RunCase(s, n);
                _results.Add(result);
                Log(Describe(result));
                if (Reports) Report().Write(_o.Out);
            }
        if (Reports)
        {
            _out.Write(Report().Markdown());
            _out.WriteLine($"wrote {Path.Combine(_o.Out, "prefill.json")} and prefill.md");
        }
        return _results.Any(r => r.Status == "error") ? 1 : 0;
    }

    PrefillReport Report() => new(_o, _model.Name, _model.Config, _cuda != null ? _cuda.Context.Device.Name : _backend.Name,
        _comm?.WorldSize ?? 1, _cuda != null, _results);

    static string Name(StrategyKind s) => s.ToString().ToLowerInvariant();

    static string Describe(PrefillCase r) => r.Status == "ok"
        ? $"{r.Strategy} n={r.Length} x{r.Ranks}: {r.Median:F3} s (median of {r.Seconds.Count}: {string.Join(", ", r.Seconds.Select(x => Markdown.F(x)))})" +
          (r.PeakGiB is { } p ? $", peak {string.Join("/", p.Select(x => Markdown.F(x, "F1")))} GiB" : "")
        : $"{r.Strategy} n={r.Length}: {r.Status}: {r.Note}";

    int RanksFor(StrategyKind s) => s == StrategyKind.Full ? 1 : _comm?.WorldSize ?? _o.Ranks ?? 2;

    PrefillCase RunCase(StrategyKind s, int n)
    {
        var config = _model.Config;
        int ranks = RanksFor(s);
        var baseResult = new PrefillCase { Strategy = Name(s), Length = n, Ranks = ranks };
        PrefillCase Skip(string why, string status = "skipped") => baseResult with { Status = status, Note = why };
        if (_comm != null && s == StrategyKind.Full) return Skip("full runs on one GPU: run bench prefill --strategies full without apb launch");
        if (_comm == null && _cuda != null && ranks > 1)
            return Skip($"on GPUs the ranks are processes: run under apb launch --nproc-per-node {ranks} -- bench prefill --device cuda ...");
        if (_o.Ranks is int given && _comm != null && given != _comm.WorldSize)
            throw new ApbException($"--ranks {given} differs from the {_comm.WorldSize} processes launched");
        if (s == StrategyKind.Ulysses && config.NumKeyValueHeads % ranks != 0)
            return Skip($"ulysses needs a rank count dividing the {config.NumKeyValueHeads} KV heads");
        if (_commDead != null && ranks > 1) return Skip($"the communicator was aborted by an earlier failure ({_commDead})");
        if ((long)n + _o.QueryTokens > config.MaxPositionEmbeddings)
            return Skip($"{n} + {_o.QueryTokens} tokens exceed max_position_embeddings {config.MaxPositionEmbeddings}");

        var options = new StrategyOptions
        {
            Strategy = s, Ranks = ranks, FallbackBelow = 0, AnchorInsertAt = 0, PadTokenId = 0,
            CollectiveTimeout = _env?.CollectiveTimeout ?? InProcessGroup.DefaultTimeout,
        };
        var rng = BenchModel.CaseRandom(_o.Seed, n);
        var context = Enumerable.Range(0, n).Select(_ => rng.Next(config.VocabSize)).ToArray();
        var query = Enumerable.Range(0, _o.QueryTokens).Select(_ => rng.Next(config.VocabSize)).ToArray();
        baseResult = baseResult with { Plan = s == StrategyKind.Apb ? ApbLengths(n, ranks, query.Length) : null };

        // Device memory: predicted per rank, and refused on every rank together when any one would not fit.
        double? need = null;
        if (_cuda != null)
        {
            long bytes = PrefillArithmetic.EstimateBytes(config, s, n, query.Length, ranks);
            var (free, _) = _cuda.Context.MemoryInfo();
            long have = free + _cuda.Memory.BytesIdle;
            need = bytes / (double)(1L << 30);
            var all = Gather([bytes, have]);
            for (int r = 0; r < all.Length / 2; r++)
                if (all[2 * r] > all[2 * r + 1] * 0.95)
                    return baseResult with
                    {
                        Status = "oom", NeedGiB = need,
                        Note = $"OOM: needs {all[2 * r] / (1L << 30):F1} GiB on rank {r}, has {all[2 * r + 1] / (1L << 30):F1} GiB free (predicted; not run)",
                    };
        }

        var seconds = new List<double>();
        var peaks = new double[ranks];
        double[][]? profiles = null;
        double[]? rankSeconds = null;
        try
        {
            if (_o.Profile) profiles = Once(options with { Timings = true }, context, query, peaks).Profiles;
            for (int w = 0; w < _o.Warmup; w++) Once(options, context, query, peaks);
            double spent = 0;
            for (int i = 0; i < _o.Repeats; i++)
            {
                var run = Once(options, context, query, peaks);
                seconds.Add(run.Seconds.Max());
                rankSeconds = run.Seconds;
                spent += run.Seconds.Max();
                if (_o.RepeatBudget > 0 && spent >= _o.RepeatBudget) break;
            }
        }
        catch (ApbException e)
        {
            bool oom = DeviceOutOfMemoryException.In(e);
            if (_comm != null && ranks > 1) _commDead = e.Message.Length > 160 ? e.Message[..160] + "…" : e.Message;
            return baseResult with
            {
                Status = oom ? "oom" : "error", NeedGiB = need,
                Note = (oom ? "OOM: " : "") + e.Message + (need is double g ? $" (predicted need {g:F1} GiB)" : ""),
                Seconds = seconds,
            };
        }
        return baseResult with
        {
            Seconds = seconds, RankSeconds = rankSeconds, Profiles = profiles, NeedGiB = need,
            PeakGiB = _cuda != null ? peaks : null,
        };
    }

    static string ApbLengths(int n, int ranks, int q)
    {
        var (a, p) = ApbDefaults.For(n, ranks);
        int lb = (n + ranks - 1) / ranks;
        a = Math.Min(Math.Max(a, q + ApbDefaults.MinAnchorContext), lb); // as DistributedSession grows a default anchor
        return $"l_a {a}, l_p {p}";
    }

    sealed record RunResult(double[] Seconds, double[][]? Profiles);

    /// <summary>One prefill on a fresh session; per rank: wall seconds, profile; the peak memory goes into peaks.</summary>
    RunResult Once(StrategyOptions options, int[] context, int[] query, double[] peaks)
    {
        _comm?.Barrier();
        _backend.Synchronize();
        var run = PrefillOnFreshSession(options, context, query);
        var profiles = run.Profiles?.Select(p => Profile.Phases.Select(ph => p.Times.GetValueOrDefault(ph).TotalMilliseconds)
            .Concat([p.Total.TotalMilliseconds, p.BytesSent / 1e6, p.BytesReceived / 1e6, p.AttentionFlops / 1e9]).ToArray()).ToArray();
        if (_comm == null)
        {
            peaks[0] = Math.Max(peaks[0], run.PeakGiB);
            return new RunResult(Enumerable.Repeat(run.Seconds, options.Ranks).ToArray(), profiles);
        }
        // One row per rank: seconds, peak GiB, then the profile (when there is one).
        var mine = new double[2 + K];
        mine[0] = run.Seconds; mine[1] = run.PeakGiB;
        profiles?[0].CopyTo(mine, 2);
        var all = Gather(mine);
        int w = mine.Length, world = all.Length / w;
        for (int r = 0; r < world; r++) peaks[r] = Math.Max(peaks[r], all[r * w + 1]);
        return new RunResult(Enumerable.Range(0, world).Select(r => all[r * w]).ToArray(),
            profiles is null ? null : Enumerable.Range(0, world).Select(r => all.AsSpan(r * w + 2, K).ToArray()).ToArray());
    }

    /// <summary>
    /// The one place a prefill session is made, run and its memory given back: a session on this process's ranks (the
    /// communicator's, or in-process CPU ranks), one timed prefill (Prefill downloads the logits, so the device work is
    /// done when it returns), this rank's peak device memory, and the per-rank profiles of an instrumented run. The
    /// session is dropped, not disposed (that would close the backend and the communicator it shares): every device
    /// block it rented goes back to the pool here.
    /// </summary>
    (double Seconds, double PeakGiB, IReadOnlyList<Profile>? Profiles) PrefillOnFreshSession(StrategyOptions options, int[] context, int[] query)
    {
        long mark = _cuda?.Memory.Mark() ?? 0;
        _cuda?.Memory.ResetPeak();
        try
        {
            var sw = Stopwatch.StartNew();
            var session = _comm != null
                ? new DistributedSession(_model.Config, _model.Weights, _backend, _comm, options)
                : new DistributedSession(_model.Config, _model.Weights, r => r == 0 ? _backend : _o.NewBackend(), options);
            session.Prefill(context, query);
            double seconds = sw.Elapsed.TotalSeconds;
            double peak = _cuda != null ? _cuda.Memory.PeakBytes / (double)(1L << 30) : 0;
            return (seconds, peak, session.PrefillProfiles);
        }
        finally
        {
            _cuda?.Memory.ReleaseSince(mark);
        }
    }

    /// <summary>Every rank's values, in rank order (this rank's alone without a communicator). Travels as fp32.</summary>
    double[] Gather(double[] mine)
    {
        if (_comm == null || _cuda == null) return mine;
        using var send = _cuda.AllocateF32(1, mine.Length);
        using var recv = _cuda.AllocateF32(_comm.WorldSize, mine.Length);
        _cuda.Upload(mine.Select(x => (float)x).ToArray(), send);
        var profile = _comm.Profile;
        _comm.Profile = null;
        try { _comm.AllGather(send, recv); }
        finally { _comm.Profile = profile; }
        var f = new float[_comm.WorldSize * mine.Length];
        _cuda.Download(recv, f);
        return f.Select(x => (double)x).ToArray();
    }

    public void Dispose()
    {
        _comm?.Dispose();
        _backend.Dispose();
        _model?.Bundle?.Dispose();
    }
}
