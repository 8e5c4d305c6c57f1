using Apb.Backends.Cuda;
using Apb.Checkpoints;
using Apb.Model;
using Apb.Strategies;
using Xunit;

namespace Apb.Tests.Strategies;

/// <summary>RankMemory's term for the Hopper attention's carried state (chunks of keys in long non-causal calls).</summary>
public class RankMemoryTests
{
    static readonly ModelConfig Llama8B = ModelShapes.Get("llama-3.1-8b");

    // One token more per rank across the chunk length: everything else in the estimate grows by a few MB per token, the
    // carried state appears all at once (rows x heads x 544 bytes at d 128, 32769 rows x 32 heads = 570 MB).
    [Theory]
    [InlineData(StrategyKind.Ring, true)]
    [InlineData(StrategyKind.Zigzag, true)]
    [InlineData(StrategyKind.Apb, false)]
    [InlineData(StrategyKind.Star, false)]
    public void TheChunkStateIsCountedWhereTheOffDiagonalBlocksChunk(StrategyKind s, bool chunks)
    {
        int ranks = 2, atChunk = ranks * CudaBackend.DefaultAttentionChunkKeys;
        long step = RankMemory.BeyondWeights(Llama8B, s, atChunk + ranks, 64, ranks) - RankMemory.BeyondWeights(Llama8B, s, atChunk, 64, ranks);
        long state = (CudaBackend.DefaultAttentionChunkKeys + 1L) * Llama8B.NumAttentionHeads * CudaBackend.AttentionStateBytesPerRowHead(Llama8B.HeadDim);
        Assert.Equal(544, CudaBackend.AttentionStateBytesPerRowHead(128));
        if (chunks) Assert.InRange(step, state, state + (16L << 20));
        else Assert.InRange(step, 0, 16L << 20);
    }

    [Fact]
    public void TheChunkStateIsCappedByItsBudget()
    {
        const int n = 1 << 20, ranks = 2;
        long ring = RankMemory.BeyondWeights(Llama8B, StrategyKind.Ring, n, 64, ranks);
        long withoutState = RankMemory.BeyondWeights(Llama8B, StrategyKind.Ring, n - ranks, 64, ranks);
        Assert.InRange(ring - withoutState, 0, 16L << 20);   // both capped at the budget: only the linear terms differ
        Assert.True((long)(n / ranks) * Llama8B.NumAttentionHeads * CudaBackend.AttentionStateBytesPerRowHead(Llama8B.HeadDim)
                    > CudaBackend.DefaultAttentionStateBudget);
    }
}
