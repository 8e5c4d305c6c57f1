using Apb.Backends.Cuda;
using Xunit;

namespace Apb.Tests.Runtime;

/// <summary>
/// Where a recorded decode step is cut into graphs (StepGraph.CutsAfter; the GPU tests run the cuts, this holds the
/// schedule for every shape, including 32-layer models the GPU tests' tiny checkpoints do not have).
/// </summary>
public class StepGraphCutTests
{
    [Theory]
    [InlineData(32, 8, new[] { 4, 8, 12, 16, 20, 24, 28 })]
    [InlineData(32, 1, new int[0])]
    [InlineData(4, 8, new[] { 1, 2, 3 })]
    [InlineData(28, 8, new[] { 4, 7, 11, 14, 18, 21, 25 })]
    [InlineData(6, 4, new[] { 2, 3, 5 })]
    public void CutsFallAfterCeilOfKLayersOverSegments(int layers, int segments, int[] cuts)
    {
        Assert.Equal(cuts, Enumerable.Range(1, layers).Where(d => StepGraph.CutsAfter(d, layers, segments)).ToArray());
    }

    [Fact]
    public void EveryShapeHasMinOfSegmentsAndLayersSegmentsEvenWithinOneLayer()
    {
        for (int layers = 1; layers <= 80; layers++)
            for (int segments = 1; segments <= 100; segments++)
            {
                var cuts = Enumerable.Range(0, layers + 2).Where(d => StepGraph.CutsAfter(d, layers, segments)).ToList();
                Assert.Equal(Math.Min(segments, layers) - 1, cuts.Count);
                var ends = cuts.Append(layers).ToList();
                var sizes = ends.Select((end, i) => end - (i == 0 ? 0 : ends[i - 1])).ToList();
                Assert.All(sizes, n => Assert.True(n >= 1, $"{layers} layers, {segments} segments: an empty segment"));
                Assert.True(sizes.Max() - sizes.Min() <= 1, $"{layers} layers, {segments} segments: sizes {string.Join(",", sizes)}");
            }
    }
}
