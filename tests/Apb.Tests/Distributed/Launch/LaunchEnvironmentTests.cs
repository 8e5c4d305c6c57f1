using Apb.Runtime.Launch;
using Xunit;

namespace Apb.Tests.Distributed.Launch;

public class LaunchEnvironmentTests
{
    [Fact]
    public void NoRankVariablesMeansNotLaunched() => Assert.Null(LaunchEnvironment.Read(_ => null));

    [Fact]
    public void VariablesRoundTripAndSwitchNvlinkMulticastOff()
    {
        var env = new LaunchEnvironment(3, 4, 1, 2, 1, "10.0.0.1", 29500, TimeSpan.FromSeconds(15), 77);
        var v = env.ToVariables();
        Assert.Equal("0", v["NCCL_NVLS_ENABLE"]);
        Assert.Equal("1", v["TORCH_SYMM_MEM_DISABLE_MULTICAST"]);
        Assert.Equal("1", v["NVSHMEM_DISABLE_NVLS"]);
        Assert.Equal(env, LaunchEnvironment.Read(k => v.GetValueOrDefault(k)));
    }

    [Fact]
    public void MalformedOrMissingVariablesAreNamed()
    {
        var e = Assert.Throws<ApbException>(() => LaunchEnvironment.Read(k => k switch { "RANK" => "0", "WORLD_SIZE" => "2", _ => null }));
        Assert.Contains("MASTER_PORT", e.Message);
        e = Assert.Throws<ApbException>(() => LaunchEnvironment.Read(k => k switch { "RANK" => "2", "WORLD_SIZE" => "2", "MASTER_PORT" => "1", _ => null }));
        Assert.Contains("RANK=2 is outside WORLD_SIZE=2", e.Message);
        e = Assert.Throws<ApbException>(() => LaunchEnvironment.Read(k => k switch { "RANK" => "x", "WORLD_SIZE" => "2", _ => null }));
        Assert.Contains("RANK=x", e.Message);
    }

    [Fact]
    public void SlurmTasksAreRanksWithRankZeroOnTheFirstNode()
    {
        var v = new Dictionary<string, string>
        {
            ["SLURM_PROCID"] = "5", ["SLURM_NTASKS"] = "8", ["SLURM_LOCALID"] = "1", ["SLURM_NODEID"] = "2",
            ["SLURM_NTASKS_PER_NODE"] = "2", ["SLURM_JOB_NODELIST"] = "gpu[03-05,07]",
        };
        var env = LaunchEnvironment.Read(k => v.GetValueOrDefault(k))!;
        Assert.Equal(new LaunchEnvironment(5, 8, 1, 2, 2, "gpu03", LaunchEnvironment.DefaultPort), env);
        v["MASTER_ADDR"] = "10.1.1.1"; v["MASTER_PORT"] = "4000";
        env = LaunchEnvironment.Read(k => v.GetValueOrDefault(k))!;
        Assert.Equal(("10.1.1.1", 4000), (env.MasterAddr, env.MasterPort));
        Assert.Equal("node1", LaunchEnvironment.FirstHost("node1,node2"));
        Assert.Equal("a-1", LaunchEnvironment.FirstHost("a-[1-2]"));
        Assert.Equal("solo", LaunchEnvironment.FirstHost("solo"));
    }

    [Fact]
    public void OpenMpiRanksAreReadAndSeveralNodesNeedMasterAddr()
    {
        var v = new Dictionary<string, string>
        {
            ["OMPI_COMM_WORLD_RANK"] = "1", ["OMPI_COMM_WORLD_SIZE"] = "2", ["OMPI_COMM_WORLD_LOCAL_RANK"] = "1",
            ["OMPI_COMM_WORLD_LOCAL_SIZE"] = "2",
        };
        Assert.Equal(new LaunchEnvironment(1, 2, 1, 2, 0, "127.0.0.1", LaunchEnvironment.DefaultPort), LaunchEnvironment.Read(k => v.GetValueOrDefault(k)));
        v["OMPI_COMM_WORLD_SIZE"] = "4";
        var e = Assert.Throws<ApbException>(() => LaunchEnvironment.Read(k => v.GetValueOrDefault(k)));
        Assert.Contains("set MASTER_ADDR", e.Message);
    }

    [Fact]
    public void TorchrunNamesWinOverTheClusterTools()
    {
        var v = new Dictionary<string, string> { ["RANK"] = "0", ["WORLD_SIZE"] = "2", ["MASTER_PORT"] = "1234", ["SLURM_PROCID"] = "1", ["SLURM_NTASKS"] = "2" };
        Assert.Equal(0, LaunchEnvironment.Read(k => v.GetValueOrDefault(k))!.Rank);
    }
}
