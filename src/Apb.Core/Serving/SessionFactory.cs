using Apb.Engine;

namespace Apb.Serving;

/// <summary>
/// Makes the state for one request: a <see cref="LocalSession"/> today, a group of ranks running a sequence-parallel
/// strategy (APB, Ring, ...). <paramref name="prompt"/> is the request's cut (APB's anchor needs its header length);
/// <paramref name="capacity"/> is the most tokens the request will hold (prompt plus max new tokens), for backends that
/// size their caches up front. The caller disposes the session when the request ends, and never holds more sessions at
/// once than the concurrency it was configured with.
/// </summary>
public delegate IInferenceSession SessionFactory(PromptTokens prompt, int capacity);
