"""CORS for browser apps that call the gateway directly: `[server] cors_origins`.

Off by default (a browser page then cannot read any answer). With origins listed, a
preflight `OPTIONS` from one of them is answered 204 with the methods and the headers it asks
for, and every answer to such an origin says who may read it and which of the gateway's
headers it may see. `"*"` allows any origin (answered as `*`, so no credentials, per the
Fetch standard). A preflight from an origin not listed is a 403 in OpenAI's shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiohttp import web

from wire.errors import GatewayError

_METHODS = "GET, POST, OPTIONS"
# The gateway's own headers a page may read (the SDKs read x-request-id and the rate limits).
_EXPOSED = ", ".join(
    (
        "x-request-id",
        "x-gateway-request-id",
        "x-gateway-model",
        "x-gateway-attempts",
        "x-gateway-dropped-tools",
        "retry-after",
        "x-should-retry",
        "x-gateway-token-count",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    )
)
_PREFLIGHT_MAX_AGE = "600"  # seconds a browser may reuse a preflight's answer


class CorsRefused(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "cors_origin_not_allowed"


class Cors:
    def __init__(self, origins: Sequence[str]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(origin.rstrip("/") for origin in origins if origin != "*")

    def allowed(self, origin: str) -> str | None:
        """What Access-Control-Allow-Origin says to `origin`, or None when it may not read."""
        if self.any:
            return "*"
        return origin if origin in self.origins else None

    def check(self, request: web.Request) -> web.StreamResponse | None:
        """Before the handler: a preflight's answer (or its 403), else None, noting for the
        response's head which origin may read it."""
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        allowed = self.allowed(origin)
        preflight = request.method == "OPTIONS" and (
            "Access-Control-Request-Method" in request.headers
        )
        if preflight:
            if allowed is None:
                raise CorsRefused(f"Origin {origin!r} may not call this gateway (cors_origins).")
            asked = request.headers.get("Access-Control-Request-Headers", "")
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": allowed,
                    "Access-Control-Allow-Methods": _METHODS,
                    "Access-Control-Allow-Headers": asked or "authorization, content-type",
                    "Access-Control-Max-Age": _PREFLIGHT_MAX_AGE,
                    "Vary": "Origin",
                },
            )
        if allowed is not None:
            # Set on prepare: a stream's headers go out before its handler returns.
            request[_ALLOW] = allowed
        return None


_ALLOW = web.RequestKey("cors_allow_origin", str)


def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """The CORS headers of an answer to an origin that may read it (run by the front door as
    the response's head goes out)."""
    allowed = request.get(_ALLOW)
    if allowed is not None:
        response.headers["Access-Control-Allow-Origin"] = allowed
        response.headers["Access-Control-Expose-Headers"] = _EXPOSED
        response.headers.add("Vary", "Origin")


def cors_check(origins: Sequence[str]) -> Callable[[web.Request], web.StreamResponse | None] | None:
    """The CORS check for `origins` (None when none are configured: CORS stays off)."""
    return Cors(origins).check if origins else None
