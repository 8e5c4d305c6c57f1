using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Apb.Runtime.Launch;

/// <summary>
/// The rendezvous connections kept open between rank 0 (the leader) and every other rank of a process group: the
/// leader sends each command as a frame (int32 length, then the bytes of <see cref="GroupCommand.Encode"/>), and a
/// follower that fails sends one frame back with its error before it exits. The leader watches every connection, so
/// a follower that dies (its socket closes) or reports a failure is known at once, not at the next collective timeout.
/// </summary>
public sealed class ControlChannel : IDisposable
{
    /// <summary>Largest frame either side accepts: a command carries token ids, so 256 MiB is a corrupt stream.</summary>
    const int MaxFrame = 256 << 20;

    readonly Socket?[] _followers;   // leader: indexed by rank (0 is null)
    readonly Socket? _leader;        // follower
    readonly Thread[] _watchers = [];
    readonly object _sendLock = new();
    volatile bool _closing;

    ControlChannel(Socket?[] followers, Socket? leader, Action<int, string>? onFollowerLost)
    {
        _followers = followers; _leader = leader;
        if (onFollowerLost is null) return;
        _watchers = Enumerable.Range(1, followers.Length - 1).Select(r => new Thread(() => Watch(r, onFollowerLost))
            { IsBackground = true, Name = $"apb control watch rank {r}" }).ToArray();
        foreach (var t in _watchers) t.Start();
    }

    /// <summary>
    /// Rank 0's end: the connections to ranks 1.. from <see cref="Rendezvous.Serve(System.Net.IPEndPoint, int, ReadOnlySpan{byte}, TimeSpan)"/>;
    /// <paramref name="onFollowerLost"/> is called (on a watcher thread) with the rank and what happened when a follower
    /// reports a failure or its connection closes before <see cref="Close"/>.
    /// </summary>
    public static ControlChannel Leader(Socket?[] followers, Action<int, string> onFollowerLost) => new(followers, null, onFollowerLost);

    /// <summary>A follower's end: its connection to rank 0 from <see cref="Rendezvous.Join"/>.</summary>
    public static ControlChannel Follower(Socket leader) => new([], leader, null);

    public bool IsLeader => _leader is null;

    /// <summary>Leader: the frame to every follower. A follower that is gone is reported by its watcher, not here.</summary>
    public void Send(byte[] frame)
    {
        var head = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(head, frame.Length);
        lock (_sendLock)
            for (int r = 1; r < _followers.Length; r++)
            {
                try
                {
                    _followers[r]!.Send(head);
                    _followers[r]!.Send(frame);
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    throw new ApbException($"rank {r} is gone: sending it the next command failed ({e.Message})");
                }
            }
    }

    /// <summary>Follower: the next frame from the leader, or null when the leader closed the connection.</summary>
    public byte[]? Receive() => ReadFrame(_leader!);

    /// <summary>Follower: tells the leader why this rank is about to exit (best effort: the leader may be gone too).</summary>
    public void ReportFailure(string message)
    {
        if (_leader is null) return;
        try
        {
            var bytes = Encoding.UTF8.GetBytes(message);
            var head = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(head, bytes.Length);
            _leader.Send(head);
            _leader.Send(bytes);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
    }

    /// <summary>Leader: from now on a closing connection is the followers leaving, not a failure.</summary>
    public void Close() => _closing = true;

    /// <summary>
    /// Leader, after the group failed: closes every connection, so followers waiting for a command see the end of the
    /// stream and exit instead of waiting for one that will never come. Safe from a watcher thread.
    /// </summary>
    public void Abort()
    {
        _closing = true;
        foreach (var s in _followers)
            try { s?.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
    }

    void Watch(int rank, Action<int, string> onLost)
    {
        var s = _followers[rank]!;
        byte[]? frame;
        try { frame = ReadFrame(s); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or ApbException) { frame = null; }
        if (_closing) return;
        onLost(rank, frame is null
            ? $"rank {rank} exited (its process died or closed its connection to rank 0)"
            : Encoding.UTF8.GetString(frame));
    }

    static byte[]? ReadFrame(Socket s)
    {
        var head = new byte[4];
        if (!ReadExactly(s, head)) return null;
        int n = BinaryPrimitives.ReadInt32LittleEndian(head);
        if (n < 0 || n > MaxFrame) throw new ApbException($"control channel: a frame of {n} bytes: the stream is corrupt");
        var frame = new byte[n];
        return ReadExactly(s, frame) ? frame : null;
    }

    static bool ReadExactly(Socket s, Span<byte> buffer)
    {
        int got = 0;
        while (got < buffer.Length)
        {
            int n;
            try { n = s.Receive(buffer[got..]); }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { return false; }
            if (n == 0) return false;
            got += n;
        }
        return true;
    }

    public void Dispose()
    {
        _closing = true;
        foreach (var s in _followers.Append(_leader))
        {
            try { s?.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
            s?.Dispose();
        }
        foreach (var t in _watchers) t.Join(TimeSpan.FromSeconds(5));
    }
}
