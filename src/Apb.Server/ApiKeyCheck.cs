using System.Security.Cryptography;
using System.Text;
using Apb.Serving;
using Microsoft.AspNetCore.Http;

namespace Apb.Server;

/// <summary>
/// `apb serve --api-key` (or APB_API_KEY): every request to the API (/v1/..., /tokenize, /detokenize) must send
/// "Authorization: Bearer KEY", as OpenAI's clients do with their api key; anything else is a 401 in OpenAI's shape.
/// /health, /metrics (probes and scrapers carry no key) and pages outside the API stay open, as with vLLM's --api-key. The comparison takes the same time whatever the key sent: both sides are hashed to 32 bytes
/// first, so neither the length nor the first differing byte of the real key shows in the answer's timing.
/// </summary>
sealed class ApiKeyCheck
{
    readonly byte[] _expected;

    public ApiKeyCheck(string key)
    {
        if (string.IsNullOrWhiteSpace(key)) throw new ApbException("--api-key is empty: give a key, or leave the option (and APB_API_KEY) out for none");
        _expected = SHA256.HashData(Encoding.UTF8.GetBytes(key));
    }

    public void Check(HttpContext ctx)
    {
        var path = ctx.Request.Path;
        if (!path.StartsWithSegments("/v1") && !path.StartsWithSegments("/tokenize") && !path.StartsWithSegments("/detokenize")) return;
        string? header = ctx.Request.Headers.Authorization;
        string? given = header is not null && header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..].Trim() : null;
        if (given is not null && CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(given)), _expected)) return;
        ctx.Response.Headers.WWWAuthenticate = "Bearer";
        throw new InvalidRequestException(given is null
                ? "You didn't provide an API key. This server was started with --api-key: send it in an Authorization header, " +
                  "\"Authorization: Bearer YOUR_KEY\" (the OpenAI clients do this with their api_key)."
                : "Incorrect API key provided. Send the key the server was started with (apb serve --api-key / APB_API_KEY).",
            code: "invalid_api_key", status: StatusCodes.Status401Unauthorized);
    }
}
