namespace Apb.Gpu.Tests;

/// <summary>
/// One named GPU test: a group (ops, passing, merge, attention, decode, models, smoke) and a name that says the op and
/// shape, so `--filter` and the xunit theories can pick it. Run receives a fresh <see cref="GpuCheck"/>.
/// </summary>
public sealed record GpuCase(string Group, string Name, Action<GpuCheck> Run)
{
    public string Id => $"{Group}/{Name}";
}

/// <summary>One comparison inside a case: what was compared, on which kernel, the error found against its limit.</summary>
public sealed record Measurement(string What, string Kernel, double Error, double Limit, bool Pass, string Note);

/// <summary>Every case, in the order the runner runs them (cheap ops first, models last).</summary>
public static class GpuCases
{
    public static IReadOnlyList<GpuCase> All { get; } =
    [
        .. OpCases.All(), .. PassingCases.All(), .. MachineryCases.All(), .. MergeCases.All(), .. AttentionCases.All(), .. DecodeCases.All(), .. Fp8KvCases.All(),
        .. SmokeCases.All(), .. FamilyCases.All(), .. ModelCases.All(),
    ];

    public static IEnumerable<string> Groups => All.Select(c => c.Group).Distinct();

    public static GpuCase Get(string id) =>
        All.FirstOrDefault(c => c.Id == id) ?? throw new ArgumentException($"no GPU case '{id}' (list them with --list)");
}
