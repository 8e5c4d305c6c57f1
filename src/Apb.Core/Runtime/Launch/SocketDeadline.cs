using System.Diagnostics;
using System.Net.Sockets;

namespace Apb.Runtime.Launch;

/// <summary>
/// Blocking socket reads bound by one deadline (a Stopwatch timestamp) for the launch handshakes (<see cref="Rendezvous"/>,
/// <see cref="SocketMesh"/>): every step of a handshake spends from the same budget, so a peer that never answers ends
/// in an error naming it, not a hang.
/// </summary>
static class SocketDeadline
{
    public static long After(TimeSpan t) => Stopwatch.GetTimestamp() + (long)(t.TotalSeconds * Stopwatch.Frequency);

    public static TimeSpan Left(long deadline) => TimeSpan.FromSeconds((double)(deadline - Stopwatch.GetTimestamp()) / Stopwatch.Frequency);

    /// <summary>Fills <paramref name="buffer"/>; false when the peer closed or the deadline passed first.</summary>
    public static bool ReadExactly(Socket s, Span<byte> buffer, long deadline)
    {
        int got = 0;
        while (got < buffer.Length)
        {
            var left = Left(deadline);
            if (left <= TimeSpan.Zero || !s.Poll((int)Math.Min(left.TotalMicroseconds, int.MaxValue), SelectMode.SelectRead)) return false;
            int n;
            try { n = s.Receive(buffer[got..]); }
            catch (SocketException) { return false; }
            if (n == 0) return false;
            got += n;
        }
        return true;
    }
}
