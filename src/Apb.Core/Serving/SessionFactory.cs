using Apb.Engine;

namespace Apb.Serving;

/// <summary>
/// Makes the state for one request: a <see cref="LocalSession"/> today, a group of ranks running a sequence-parallel
/// strategy (APB, Ring, ...) later. <paramref name="capacity"/> is the most tokens the request will hold (prompt plus
/// max new tokens), for backends that size their caches up front. The caller disposes the session when the request
/// ends, and never holds more sessions at once than the concurrency it was configured with.
/// </summary>
public delegate IInferenceSession SessionFactory(int capacity);
