using Apb.Bench.Timing;
using Xunit;

namespace Apb.Tests.Bench;

/// <summary>The kernel bench's warm-up by device time (GpuTimer.Measure), with the timed call stood in by a counter.</summary>
public sealed class GpuTimerWarmUpTests
{
    [Fact]
    public void CallsRunUntilTheirTimeReachesTheBudget()
    {
        // 3 ms calls against 1000 ms: the 334th call takes the sum past 1000 (333 x 3 = 999).
        Assert.Equal(334, GpuTimer.WarmUp(() => 3.0, 1000));
        // A call longer than the budget: one, then the rows are timed.
        Assert.Equal(1, GpuTimer.WarmUp(() => 210.0, 100));
    }

    [Fact]
    public void NoBudgetMeansNoExtraCall()
    {
        int calls = 0;
        Assert.Equal(0, GpuTimer.WarmUp(() => { calls++; return 1.0; }, 0));
        Assert.Equal(0, calls);
    }

    [Fact]
    public void CallsOfNoMeasurableTimeStopAtTheCap()
    {
        // A harness whose call the events time as 0 ms would otherwise never reach the budget.
        Assert.Equal(GpuTimer.MaxWarmUpCalls, GpuTimer.WarmUp(() => 0.0, 1000));
    }
}
