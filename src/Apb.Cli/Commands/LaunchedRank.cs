using Apb.Backends;
using Apb.Engine;
using Apb.Strategies;
using Apb.Runtime;
using Apb.Runtime.Launch;

namespace Apb.Cli.Commands;

/// <summary>
/// How `generate` and `logits` run when `apb launch` started this process (RANK/WORLD_SIZE set): as one rank of the
/// group, on GPU LOCAL_RANK, over NCCL. Rank 0 leads and reports; the others follow its commands.
/// </summary>
static class LaunchedRank
{
    public static RankGroup Group(ModelBundle bundle, StrategyOptions o, LaunchEnvironment env, Func<IBackend> backend)
    {
        ProcessGroup.DieWithLauncher(env);
        var b = backend();
        try
        {
            var weights = bundle.LoadWeights(b);
            return ProcessGroup.Open(bundle.Config, weights, b, o, env);
        }
        catch
        {
            b.Dispose();
            throw;
        }
    }
}
