using System.Text;

namespace Apb.Cli.Commands;

/// <summary>
/// UTF-8 bytes written to a TextWriter (stdout for `--out -`): JSON writers want a Stream, and the command's stdout is
/// a TextWriter (the console, or a test's StringWriter). A character split across two writes is held until complete.
/// </summary>
sealed class WriterStream(TextWriter writer) : Stream
{
    readonly Decoder _decoder = new UTF8Encoding(false).GetDecoder();

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[_decoder.GetCharCount(bytes, flush: false)];
        int n = _decoder.GetChars(bytes, chars, flush: false);
        writer.Write(chars, 0, n);
    }

    public override void Flush() => writer.Flush();
    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
