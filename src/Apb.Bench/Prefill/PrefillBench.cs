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
/// prefill.md after every case (a crash keeps what was measured). The ranks are a resident rank group: processes under
/// `apb launch` (one per GPU; rank 0 runs the cases, the others follow its commands), else threads of this process on
/// its device (several ranks on one GPU or on the CPU), one group per rank count. Strategies run on it as requests.
/// </summary>
public sealed class PrefillBench : IDisposable
{
    readonly PrefillSettings _o;
    readonly TextWriter _out, _log;
    readonly Progress _progress;
    readonly LaunchEnvironment? _env = LaunchEnvironment.Current;
    readonly IBackend _backend;
    readonly CudaBackend? _cuda;
    // The ranks: this process's rank of a launched group, or a group of threads per rank count.
    RankGroup? _launched;
    readonly Dictionary<int, RankGroup> _groups = new();
    readonly List<IBackend> _extraBackends = [];
    BenchModel _model = null!;
    readonly List<PrefillCase> _results = [];
    readonly Stopwatch _clock = Stopwatch.StartNew();
    // APB's scorer by the rule every command follows (ScorerChoice): a checkpoint folder's retaining heads when it has
    // them; a random-weight shape has none, so it runs the query-aware scorer. Every APB row names the one that ran.
    readonly (ScorerKind Kind, string? Heads) _scorer;

    /// <param name="output">the results table</param>
    /// <param name="log">a line per case and what it measured (rank 0 only)</param>
    /// <param name="progress">which case runs now, with an ETA (rank 0 only)</param>
    public PrefillBench(PrefillSettings settings, TextWriter output, TextWriter log, Progress? progress = null)
    {
        _o = settings; _out = output; _log = log; _progress = progress ?? Progress.Silent;
        if (_o.Strategies.Length == 0) throw new ApbException("--strategies is empty");
        StrategyOptions.CheckPassingBudget(settings.PassingBudget, settings.Strategies);
        if (_env != null) ProcessGroup.DieWithLauncher(_env);
        _backend = settings.NewBackend();
        _cuda = _backend as CudaBackend;
        _scorer = ScorerChoice.Resolve(settings.Scorer, settings.RetainingHeads, settings.Shape is null ? settings.Model : null);
        ScorerChoice.CheckNoveltyWeight(_scorer.Kind, settings.NoveltyWeight);
    }

    bool Reports => _launched?.IsLeader ?? true;

    void Log(string line)
    {
        if (Reports) { _log.WriteLine($"[bench {_clock.Elapsed.TotalSeconds,6:F1}s] {line}"); _log.Flush(); }
    }

    /// <summary>Runs every (length, strategy) case; 1 when any case ended in an error (oom and skipped are not errors).</summary>
    public int Run()
    {
        var sw = Stopwatch.StartNew();
        if (_cuda is null && _o.Model is null)
        {
            var shape = ModelShapes.Get(_o.Shape ?? BenchModel.DefaultShape);
            CpuLimits.CheckWeights(shape, $"--shape {_o.Shape ?? BenchModel.DefaultShape}");
            CpuLimits.CheckPrefillTime(shape, $"--shape {_o.Shape ?? BenchModel.DefaultShape}", _o, CpuLimits.MeasureGflops());
        }
        _model = BenchModel.Open(_o.Shape, _o.Model, _backend, _o.Seed);
        if (_backend.AttentionQkFp8) Qk8.RequireHeadDim(_model.Config.HeadDim);
        if (_env != null)
        {
            var options = new StrategyOptions
            {
                Strategy = GroupStrategy(StrategyKind.Ring), Ranks = _env.WorldSize, FallbackBelow = 0, PadTokenId = 0,
                Scorer = _scorer.Kind, NoveltyWeight = _o.NoveltyWeight, RetainingHeadsPath = _scorer.Heads, PassingBudget = _o.PassingBudget,
                CollectiveTimeout = _env.CollectiveTimeout ?? InProcessGroup.DefaultTimeout,
            };
            _launched = ProcessGroup.Open(_model.Config, _model.Weights, _backend, options, _env);
            // Ranks 1..: serve rank 0's commands (it runs every case) until it is done.
            if (!_launched.IsLeader) { _launched.Follow(); return 0; }
        }
        Log($"{_model.Name}: {Markdown.Count(_model.Config.ParameterCount)} parameters on {_backend.Name} in {sw.Elapsed.TotalSeconds:F1} s" +
            (_launched != null ? $", rank 0 of {_launched.WorldSize} processes" : ""));

        int cases = _o.Lengths.Length * _o.Strategies.Length, started = 0;
        var runClock = Stopwatch.StartNew();
        foreach (int n in _o.Lengths)
            foreach (var s in _o.Strategies)
            {
                // The ETA weighs cases equally: longer contexts come later and take longer, so it is a lower bound.
                if (Reports) _progress.Update($"[bench {_clock.Elapsed.TotalSeconds,6:F1}s] case {Progress.Fraction(started, cases, runClock.Elapsed)}: {Name(s)} n={n}", force: true);
                started++;
                var result = RunCase(s, n);
                _progress.Clear();
                _results.Add(result);
                Log(Describe(result));
                if (Reports) Report().Write(_o.Out);
            }
        if (Reports)
        {
            _out.Write(Report().Markdown());
            _out.WriteLine($"wrote {Path.Combine(_o.Out, "prefill.json")} and prefill.md");
            if (_o.Chart is { } chart)
            {
                File.WriteAllText(chart, Charts.ResultCharts.Prefill(_results, _model.Name, _o.Device));
                _out.WriteLine($"wrote {chart}");
            }
        }
        return _results.Any(r => r.Status == "error") ? 1 : 0;
    }

    PrefillReport Report() => new(_o, _model.Name, _model.Config, _cuda != null ? _cuda.Context.Device.Name : _backend.Name,
        _launched?.WorldSize ?? 1, _cuda != null, _results, _backend.AttentionQkFp8);

    static string Name(StrategyKind s) => s.Name();

    static string Describe(PrefillCase r) => r.Status == "ok"
        ? $"{r.Strategy} n={r.Length} x{r.Ranks}: {r.Median:F3} s (median of {r.Seconds.Count}: {string.Join(", ", r.Seconds.Select(x => Markdown.F(x)))})" +
          (r.PeakGiB is { } p ? $", peak {string.Join("/", p.Select(x => Markdown.F(x, "F1")))} GiB" : "")
        : $"{r.Strategy} n={r.Length}: {r.Status}: {r.Note}";

    // A group loads the retaining heads, and takes a passing budget, only when made for APB: with either, the groups are
    // APB's (each case's request names its strategy).
    StrategyKind GroupStrategy(StrategyKind otherwise) => _scorer.Kind.UsesHeads() || _o.PassingBudget is not null ? StrategyKind.Apb : otherwise;

    int RanksFor(StrategyKind s) => s == StrategyKind.Full ? 1 : _launched?.WorldSize ?? _o.Ranks ?? 2;

    /// <summary>
    /// The ranks a case runs on: the launched group, or a group of threads made once per rank count (rank 0 on the
    /// bench's own backend, the others on backends of the same device, all sharing the one copy of the weights).
    /// </summary>
    RankGroup GroupFor(int ranks)
    {
        if (_launched != null) return _launched;
        if (_groups.TryGetValue(ranks, out var g)) return g;
        var options = new StrategyOptions
        {
            Strategy = GroupStrategy(ranks == 1 ? StrategyKind.Full : StrategyKind.Ring), Ranks = ranks, FallbackBelow = 0, PadTokenId = 0,
            Scorer = _scorer.Kind, NoveltyWeight = _o.NoveltyWeight, RetainingHeadsPath = _scorer.Heads, PassingBudget = _o.PassingBudget,
        };
        return _groups[ranks] = RankGroup.Create(_model.Config, options, r =>
        {
            if (r == 0) return _backend;
            var b = _o.NewBackend();
            _extraBackends.Add(b);
            return b;
        }, _ => _model.Weights, ownsBackends: false);
    }

    PrefillCase RunCase(StrategyKind s, int n)
    {
        var config = _model.Config;
        int ranks = RanksFor(s);
        var baseResult = new PrefillCase { Strategy = Name(s), Length = n, Ranks = ranks };
        PrefillCase Skip(string why, string status = "skipped") => baseResult with { Status = status, Note = why };
        if (_launched != null && s == StrategyKind.Full) return Skip("full runs on one GPU: run bench prefill --strategies full without apb launch");
        if (_o.Ranks is int given && _launched != null && given != _launched.WorldSize)
            throw new ApbException($"--ranks {given} differs from the {_launched.WorldSize} processes launched");
        if (s == StrategyKind.Ulysses && StrategyOptions.UlyssesProblem(config.NumKeyValueHeads, ranks) is { } why) return Skip(why);
        if (_launched?.Failure is { } dead) return Skip($"the rank group failed in an earlier case ({dead})");
        if ((long)n + _o.QueryTokens > config.MaxPositionEmbeddings)
            return Skip($"{n} + {_o.QueryTokens} tokens exceed max_position_embeddings {config.MaxPositionEmbeddings}");

        var group = GroupFor(ranks);
        var options = group.Options with { Strategy = s, Ranks = ranks };
        var rng = BenchModel.CaseRandom(_o.Seed, n);
        var context = Enumerable.Range(0, n).Select(_ => rng.Next(config.VocabSize)).ToArray();
        var query = Enumerable.Range(0, _o.QueryTokens).Select(_ => rng.Next(config.VocabSize)).ToArray();
        baseResult = baseResult with { Plan = s.IsApb() ? $"{ApbLengths(options, n, query.Length)}, {ScorerChoice.Label(_scorer.Kind, _o.NoveltyWeight)}" : null };

        // Device memory: predicted per rank, and refused on every rank together when any one would not fit.
        double? need = null;
        if (_cuda != null)
        {
            long bytes = RankMemory.BeyondWeights(config, s, n, query.Length, ranks, passingBudget: _o.PassingBudget);
            need = bytes / (double)(1L << 30);
            // Ranks that are threads of this process share its device: each needs its bytes out of what that device has.
            long sharing = _launched != null ? 1 : ranks;
            var memory = group.Memory().Select(m => m.Device).ToArray();
            for (int r = 0; r < memory.Length; r++)
                if (!RankMemory.Fits(bytes * sharing, memory[r].AvailableBytes))
                    return baseResult with
                    {
                        Status = "oom", NeedGiB = need,
                        Note = $"OOM: needs {bytes * sharing / (double)(1L << 30):F1} GiB on rank {r}'s device, has {memory[r].AvailableBytes / (double)(1L << 30):F1} GiB free (predicted; not run)",
                    };
        }

        var seconds = new List<double>();
        var peaks = new double[ranks];
        double[][]? profiles = null;
        double[]? rankSeconds = null;
        try
        {
            // The warm-up runs come first, so the profile's phases do not hold first-use costs (kernel modules and
            // cuBLASLt plans loaded, NVRTC on a cold cache). With --warmup 0 the profile is the first run and warms the
            // timed ones: its phases then hold them, and when NVRTC compiled anything during it (o_proj once read 3.2 s of
            // a 10.1 s prefill at 128K) it runs again from the cache. Ranks in other processes (under `apb launch`)
            // compile on their own and are not seen here.
            for (int w = 0; w < _o.Warmup; w++) Once(group, options, context, query, peaks);
            if (_o.Profile)
            {
                int compiled = KernelCompiler.Compilations;
                profiles = Once(group, options with { Timings = true }, context, query, peaks).Profiles;
                if (KernelCompiler.Compilations != compiled)
                    profiles = Once(group, options with { Timings = true }, context, query, peaks).Profiles;
                // An instrumented run synchronizes at every phase: its per-rank totals say where each rank's time went.
                rankSeconds = profiles!.Select(p => p[Profile.Phases.Length] / 1000).ToArray();
            }
            double spent = 0;
            // APB_KERNEL_TIMES=1: rank 0's kernels over the timed runs (its backend is this bench's own).
            _cuda?.Context.Times?.Reset();
            for (int i = 0; i < _o.Repeats; i++)
            {
                var run = Once(group, options, context, query, peaks);
                seconds.Add(run.Seconds);
                spent += run.Seconds;
                if (_o.RepeatBudget > 0 && spent >= _o.RepeatBudget) break;
            }
        }
        catch (ApbException e)
        {
            bool oom = DeviceOutOfMemoryException.In(e);
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
            PeakGiB = _cuda != null ? peaks : null, Kernels = _cuda?.Context.Times?.Totals(),
        };
    }

    // The lengths and budget of the plan the ranks will run (SequencePlanner's rules, from the case's options); a plan
    // it refuses is the run's to report, so the label only says so.
    static string ApbLengths(StrategyOptions options, int n, int q)
    {
        try { return SequencePlanner.Plan(options, n, q, 0).Plan!.ApbLengths; }
        catch (ApbException) { return "no plan"; }
    }

    sealed record RunResult(double Seconds, double[][]? Profiles);

    /// <summary>
    /// The one place a prefill is run and its memory given back: a request on the group, timed on rank 0 from the call
    /// to its logits (they need every rank's part: the query's star phase gathers from all of them), the per-rank
    /// profiles of an instrumented run, each rank's peak memory, then the sequence released on every rank.
    /// </summary>
    RunResult Once(RankGroup group, StrategyOptions options, int[] context, int[] query, double[] peaks)
    {
        group.Memory(resetPeak: true);
        var sw = Stopwatch.StartNew();
        var r = group.Prefill(new PrefillRequest(context, query, AnchorInsertAt: 0, DecodeBudget: 0, Options: options));
        double seconds = sw.Elapsed.TotalSeconds;
        double[][]? profiles = null;
        try
        {
            if (options.Timings)
                profiles = group.Reports(r.Sequence).Select(x => RankProfileTable.Values(x.Prefill!)).ToArray();
        }
        finally { group.Release([r.Sequence]); }
        var memory = group.Memory().Select(m => m.Device).ToArray();
        for (int i = 0; i < Math.Min(peaks.Length, memory.Length); i++) peaks[i] = Math.Max(peaks[i], memory[i].PeakBytes / (double)(1L << 30));
        return new RunResult(seconds, profiles);
    }

    public void Dispose()
    {
        _launched?.Dispose();
        foreach (var g in _groups.Values) g.Dispose();
        foreach (var b in _extraBackends) b.Dispose();
        _backend.Dispose();
        _model?.Bundle?.Dispose();
    }
}
