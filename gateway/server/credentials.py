"""The keys a request presents, read from its headers, and the 401 for a missing or wrong one.

Below every policy and observer: the gateway keys (`gateway.policy.keys`), the admin key (the
usage route, the console, the detailed health) and the metrics key (`/metrics`) are all read
from the same headers, in the same order.
"""

from __future__ import annotations

from aiohttp import web

from wire.errors import GatewayError

# Headers that may carry a key, in the order they are looked at.
GATEWAY_KEY_HEADER = "x-gateway-key"
CLIENT_KEY_HEADERS = ("x-api-key", "x-goog-api-key")


class InvalidApiKey(GatewayError):
    """401 with OpenAI's shape for a missing or unknown key."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


def presented_keys(request: web.Request) -> list[str]:
    """Every key the request carries, in the order they are looked at."""
    headers = request.headers
    found = []
    explicit = headers.get(GATEWAY_KEY_HEADER)
    if explicit:
        found.append(explicit.strip())
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        found.append(token.strip())
    for name in CLIENT_KEY_HEADERS:
        value = headers.get(name)
        if value:
            found.append(value.strip())
    return found
