namespace Apb.Serving;

/// <summary>Every run slot is taken and the wait line is full: the caller should retry later (HTTP 429).</summary>
public sealed class QueueFullException(string message) : ApbException(message);
