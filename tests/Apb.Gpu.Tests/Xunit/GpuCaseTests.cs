using Xunit;

namespace Apb.Gpu.Tests.Xunit;

/// <summary>The backends shared by every case of a `dotnet test` run, made at the first case that runs.</summary>
public sealed class GpuSession : IDisposable
{
    readonly Lazy<GpuDevices> _devices = new(() => new GpuDevices());
    public GpuDevices Devices => _devices.Value;
    public void Dispose() { if (_devices.IsValueCreated) _devices.Value.Dispose(); }
}

/// <summary>
/// The cases of <see cref="GpuCases"/> under `dotnet test`, one theory per group over the case names (the AOT runner,
/// Program.Main, runs the same cases on the GPU machine). Skipped without a GPU.
/// </summary>
public sealed class GpuCaseTests(GpuSession session) : IClassFixture<GpuSession>
{
    static TheoryData<string> Ids(string group) => new(GpuCases.All.Where(c => c.Group == group).Select(c => c.Id));

    public static TheoryData<string> OpCases => Ids("ops");
    public static TheoryData<string> PassingCases => Ids("passing");
    public static TheoryData<string> MergeCases => Ids("merge");
    public static TheoryData<string> AttentionCases => Ids("attention");
    public static TheoryData<string> DecodeCases => Ids("decode");
    public static TheoryData<string> SmokeCases => Ids("smoke");
    public static TheoryData<string> ModelCases => Ids("models");

    [GpuTheory, MemberData(nameof(OpCases))] public void Ops(string id) => Run(id);
    [GpuTheory, MemberData(nameof(PassingCases))] public void Passing(string id) => Run(id);
    [GpuTheory, MemberData(nameof(MergeCases))] public void Merge(string id) => Run(id);
    [GpuTheory, MemberData(nameof(AttentionCases))] public void Attention(string id) => Run(id);
    [GpuTheory, MemberData(nameof(DecodeCases))] public void Decode(string id) => Run(id);
    [GpuTheory, MemberData(nameof(SmokeCases))] public void Smoke(string id) => Run(id);
    [GpuTheory, MemberData(nameof(ModelCases))] public void Models(string id) => Run(id);

    void Run(string id)
    {
        var r = GpuCaseRunner.Run(GpuCases.Get(id), session.Devices);
        Assert.True(r.Pass, GpuCaseRunner.Describe(r));
    }
}
