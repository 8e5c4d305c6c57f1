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
}
