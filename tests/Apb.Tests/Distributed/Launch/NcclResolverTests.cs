using Apb.Backends.Cuda.Native;
using Xunit;

namespace Apb.Tests.Distributed.Launch;

public class NcclResolverTests
{
    [Fact]
    public void AMachineWithoutNcclGetsTheSearchTraceNotACrash()
    {
        // The real probe never throws, found or not.
        var real = Nccl.TryInitialize();
        if (real is null) return; // this machine has NCCL: the message below cannot be produced here
        Assert.Contains("libnccl.so.2", real);
        string empty = Directory.CreateTempSubdirectory("apb-no-nccl").FullName;
        try
        {
            var r = new NativeResolver(k => k == "APB_CUDA_LIB_DIR" ? empty : null);
            var why = Nccl.Probe(r, out nint lib);
            Assert.Equal(0, lib);
            Assert.Contains("NCCL (libnccl.so.2) not found", why);
            Assert.Contains($"{empty}/libnccl.so.2: not found", why);
            Assert.Contains("not found by the loader's default search", why);
        }
        finally { Directory.Delete(empty); }
    }
}
