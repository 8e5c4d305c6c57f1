using System.Buffers.Binary;
using Apb.Checkpoints;
using Xunit;
using Xunit.Abstractions;

namespace Apb.Tests.Checkpoints;

/// <summary>
/// Seeded corruption of a real checkpoint file: byte flips, insertions and deletions in the JSON header, random header
/// length fields, truncations. Each copy must either open with every tensor's bytes inside the file (and readable), or
/// throw ApbException. Any other exception, a crash or a hang is a bug in the reader.
/// </summary>
public class SafeTensorsFuzzTests(ITestOutputHelper log)
{
    const int Cases = 400;

    enum Mutation { FlipBytes, InsertBytes, DeleteBytes, ChangeDigit, LengthField, Truncate }

    [Fact]
    public void CorruptedHeadersOpenCleanlyOrThrowApbException()
    {
        byte[] original = File.ReadAllBytes(Path.Combine(Repo.Fixture("qwen2-tiny"), "model.safetensors"));
        int headerLength = (int)BinaryPrimitives.ReadInt64LittleEndian(original);
        using var tmp = new TempDir();
        var rng = new Random(20240611);
        var opened = new Dictionary<Mutation, int>();
        var refused = new Dictionary<Mutation, int>();

        for (int i = 0; i < Cases; i++)
        {
            var m = (Mutation)(i % 6);
            byte[] bytes = Mutate(original, headerLength, m, rng);
            string p = tmp.File($"case{i:D3}.safetensors");
            File.WriteAllBytes(p, bytes);
            try
            {
                using var f = SafeTensorsFile.Open(p);
                CheckConsistent(f, bytes);
                opened[m] = opened.GetValueOrDefault(m) + 1;
            }
            catch (ApbException e)
            {
                Assert.Contains(p, e.Message);   // every refusal names the file
                refused[m] = refused.GetValueOrDefault(m) + 1;
            }
            catch (Exception e) when (e is not Xunit.Sdk.XunitException)
            {
                Assert.Fail($"case {i} ({m}): {e.GetType().Name} instead of ApbException: {e.Message}\n{e.StackTrace}");
            }
            File.Delete(p);
        }
        foreach (Mutation m in Enum.GetValues<Mutation>())
            log.WriteLine($"{m,-12} opened {opened.GetValueOrDefault(m),3}  refused {refused.GetValueOrDefault(m),3}");
        // The mutations must actually reach the validation: most are refused, and some harmless ones (a flipped space of
        // padding, a digit of a float in __metadata__...) still open.
        Assert.True(refused.Values.Sum() > Cases / 2, $"only {refused.Values.Sum()} of {Cases} corrupted files were refused");
        Assert.True(opened.Values.Sum() > 0, "no corrupted file opened: the mutations are too coarse to test the accepting side");
    }

    static void CheckConsistent(SafeTensorsFile f, byte[] bytes)
    {
        long n = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        long dataStart = 8 + n;
        Assert.Equal(bytes.LongLength, f.FileLength);
        foreach (var t in f.Tensors.Values)
        {
            Assert.InRange(t.Begin, 0, t.End);
            Assert.InRange(dataStart + t.End, dataStart, bytes.LongLength);
            Assert.Equal(t.ElementCount * DTypes.Size(t.DType), t.End - t.Begin);
            // Read the bytes through the mapping and compare with the file: a bad pointer would fault or differ here.
            var span = f.Bytes(t);
            Assert.True(span.SequenceEqual(bytes.AsSpan((int)(dataStart + t.Begin), (int)(t.End - t.Begin))), $"tensor {t.Name}: bytes differ");
        }
    }

    const string JsonBytes = "{}[]\":, 0123456789eE-.x";

    static byte[] Mutate(byte[] original, int headerLength, Mutation m, Random rng)
    {
        var b = new List<byte>(original);
        int HeaderPos() => 8 + rng.Next(headerLength);
        switch (m)
        {
            case Mutation.FlipBytes:
                for (int k = rng.Next(1, 4); k > 0; k--)
                {
                    int pos = HeaderPos();
                    b[pos] = rng.Next(3) == 0 ? (byte)rng.Next(256) : (byte)(b[pos] ^ (1 << rng.Next(8)));
                }
                break;
            case Mutation.InsertBytes:
            case Mutation.DeleteBytes:
            {
                int count = rng.Next(1, 5), pos = HeaderPos();
                if (m == Mutation.InsertBytes)
                    b.InsertRange(pos, Enumerable.Range(0, count).Select(_ => (byte)JsonBytes[rng.Next(JsonBytes.Length)]));
                else
                    b.RemoveRange(pos, Math.Min(count, 8 + headerLength - pos));
                // Half the time keep the length field in step with the edit, so the JSON itself gets parsed.
                if (rng.Next(2) == 0)
                    WriteLength(b, headerLength + (m == Mutation.InsertBytes ? count : -Math.Min(count, 8 + headerLength - pos)));
                break;
            }
            case Mutation.ChangeDigit:
            {
                // Digits are shapes and offsets: the edits most likely to parse yet lie about where tensors are.
                var digits = Enumerable.Range(8, headerLength).Where(i => b[i] is >= (byte)'0' and <= (byte)'9').ToArray();
                for (int k = rng.Next(1, 3); k > 0; k--)
                    b[digits[rng.Next(digits.Length)]] = (byte)('0' + rng.Next(10));
                break;
            }
            case Mutation.LengthField:
                WriteLength(b, rng.Next(4) switch
                {
                    0 => rng.NextInt64(long.MinValue, long.MaxValue),
                    1 => rng.NextInt64(0, original.Length + 16),
                    2 => headerLength + rng.Next(-16, 17),
                    _ => rng.NextInt64(0, 1L << 32),
                });
                break;
            case Mutation.Truncate:
                int keep = rng.Next(3) == 0 ? rng.Next(0, 8 + headerLength + 16) : rng.Next(0, original.Length);
                b.RemoveRange(keep, b.Count - keep);
                break;
        }
        return b.ToArray();
    }

    static void WriteLength(List<byte> b, long n)
    {
        Span<byte> s = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(s, n);
        for (int i = 0; i < 8; i++) b[i] = s[i];
    }
}
