namespace Apb.Backends;

/// <summary>
/// How a KV cache stores its rows (`--kv-cache-dtype`). Auto: the backend's activation type (bf16 on a GPU, fp32 on
/// the CPU). Fp8: FP8 E4M3 with an fp32 scale per 32 values (docs/notes/kv-fp8-plan.md), 144 bytes per head-128 row
/// against 256 in bf16; attention reads the values the codes stand for, on every backend (the CPU keeps those values
/// in fp32, so CPU and GPU compute with the same keys).
/// </summary>
public enum KvCacheDType { Auto, Fp8 }

public static class KvCacheDTypes
{
    public static KvCacheDType Parse(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" or "bf16" => KvCacheDType.Auto,
        "fp8" or "fp8_e4m3" or "fp8-e4m3" or "e4m3" => KvCacheDType.Fp8,
        _ => throw new ApbException($"unknown KV cache dtype '{text}': expected auto (the model's activation type) or fp8 (E4M3 with a scale per 32 values)"),
    };

    public static string Name(this KvCacheDType d) => d == KvCacheDType.Fp8 ? "fp8" : "auto";

    /// <summary>Values a scale covers in an fp8 row (APB_FP8_GROUP in fp8.cuh).</summary>
    public const int Fp8Group = 32;

    /// <summary>
    /// Bytes of an fp8 cache row of <paramref name="cols"/> values on a device: the codes, then a 4-byte scale per 32,
    /// rounded up to 16 bytes so that every row starts where the kernels' 8- and 16-byte loads may read (1152 for
    /// Llama-3-8B's 1024 values).
    /// </summary>
    public static int Fp8RowBytes(int cols) => (Fp8UsedBytes(cols) + 15) / 16 * 16;

    /// <summary>The bytes of an fp8 row that hold something: codes and scales, without the padding.</summary>
    public static int Fp8UsedBytes(int cols) => cols + cols / Fp8Group * 4;

    /// <summary>A cache row of <paramref name="cols"/> values on a GPU: bf16 for Auto, else <see cref="Fp8RowBytes"/>.</summary>
    public static long DeviceRowBytes(int cols, KvCacheDType dtype) => dtype == KvCacheDType.Fp8 ? Fp8RowBytes(cols) : 2L * cols;
}
