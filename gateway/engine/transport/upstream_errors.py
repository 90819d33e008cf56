"""What can go wrong talking to an upstream, and the gateway error each failure is.

Both upstream clients' exceptions stop here: `as_gateway_error` maps aiohttp's and the lean
client's (`UpstreamFailure`, which `gateway.engine.transport.http1.lean_errors` subclasses) to
the gateway's own errors at this boundary (as httpcore's `map_exceptions` does), in the same
words, naming the provider and never its address, so nothing else needs to know them.
"""

from __future__ import annotations

import errno
import os
import ssl

import aiohttp
import orjson

from gateway.server import fdlimit
from wire.errors import (
    GatewayError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from wire.jsondepth import MAX_DEPTH


class UpstreamFailure(Exception):
    """A failure one of the gateway's own clients names itself (the lean client's)."""

    def gateway_error(self, name: str) -> GatewayError:
        """The client-visible error; `name` is the provider's name, quoted."""
        return UpstreamUnreachable(f"The connection to provider {name} was lost.")


# The default for [server] max_upstream_bytes.
MAX_BODY_BYTES = 64 * 1024 * 1024


class RedirectRefused(Exception):
    """The upstream answered 3xx. Not followed: a redirect would carry the provider's key
    headers (api-key, x-api-key, configured headers) and the body to wherever it points."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class BodyTooLarge(Exception):
    """An upstream answer to be held whole went past the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"over {limit} bytes")
        self.limit = limit


class BodyTooDeep(Exception):
    """An upstream JSON answer nests deeper than the gateway's decoders may go."""


def client_timeout(seconds: float, *, reads: bool = True) -> aiohttp.ClientTimeout:
    """The provider `timeout`: connecting, and (`reads`) waiting for headers and any silence
    between reads. Streams leave reads to `gateway.engine.deadline`, which costs nothing per
    chunk."""
    return aiohttp.ClientTimeout(
        total=None, sock_connect=seconds, sock_read=seconds if reads else None
    )


def as_gateway_error(exc: BaseException, provider: str, timeout: float) -> GatewayError | None:
    """The gateway error for an exception raised while talking to an upstream, or None.

    Messages name the provider and say what happened in plain words: never the upstream's
    address (a 502 is shown to clients) nor aiohttp's internals.
    """
    # A gateway error raised inside aiohttp (an upload found too large while it is streamed)
    # comes back wrapped in a client error: the cause is the answer.
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, GatewayError):
            return cause
        cause = cause.__cause__
    name = repr(provider)
    if isinstance(exc, UpstreamFailure):  # the lean client's own, in the same words
        return exc.gateway_error(name)
    if isinstance(exc, RedirectRefused):
        return UpstreamProtocolError(
            f"Provider {name} answered with a redirect (HTTP {exc.status}). The gateway does "
            "not follow redirects, so that the provider's key goes nowhere else: check its "
            "base_url.",
            code="upstream_redirect",
        )
    if isinstance(exc, BodyTooLarge):
        return UpstreamProtocolError(
            f"Provider {name} sent an answer larger than the gateway's limit of {exc.limit} "
            "bytes ([server] max_upstream_bytes).",
            code="upstream_too_large",
        )
    if (
        isinstance(exc, (RecursionError, BodyTooDeep))  # a decoder met JSON too deep to read
        or (isinstance(exc, orjson.JSONEncodeError) and "ecursion" in str(exc))  # or to write
    ):
        return UpstreamProtocolError(
            f"Provider {name} sent JSON nested deeper than the gateway reads ({MAX_DEPTH} levels)."
        )
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts subclass it
        return UpstreamTimeout(
            f"Provider {name} sent nothing for {timeout:g} seconds (its timeout)."
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _cannot_connect(exc, name)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamUnreachable(f"Provider {name} closed the connection before answering.")
    if isinstance(exc, aiohttp.ClientPayloadError):
        if "content-encoding" in str(exc).lower():
            return UpstreamProtocolError(
                f"Provider {name} sent a compressed answer that could not be inflated."
            )
        return UpstreamUnreachable(
            f"Provider {name} closed the connection before the answer was complete."
        )
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamProtocolError(f"Provider {name} sent a response that is not valid HTTP.")
    if isinstance(exc, aiohttp.InvalidURL):
        return UpstreamUnreachable(f"Provider {name} has an invalid base_url.")
    if isinstance(exc, aiohttp.ClientOSError):
        return UpstreamUnreachable(
            f"The connection to provider {name} was lost ({_reason(exc, 'a network error')})."
        )
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamUnreachable(f"The connection to provider {name} was lost.")
    return None


def _cannot_connect(exc: aiohttp.ClientConnectorError, name: str) -> GatewayError:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = "its TLS certificate could not be verified"
    elif isinstance(exc, aiohttp.ClientSSLError) or isinstance(exc.os_error, ssl.SSLError):
        reason = "the TLS handshake failed"
    elif isinstance(exc, aiohttp.ClientConnectorDNSError):
        reason = "its host name could not be resolved"
    elif exc.os_error.errno in fdlimit.EXHAUSTED:
        fdlimit.report_exhaustion(f"connecting to provider {name}")
        return GatewayError(
            f"The gateway cannot open a connection to provider {name} now: it has run out of "
            "file descriptors. Try again shortly.",
            status=503,
            code="out_of_file_descriptors",
        )
    else:
        reason = _reason(exc.os_error, "the connection failed")
    return UpstreamUnreachable(f"Cannot connect to provider {name}: {reason}.")


def _reason(error: OSError, default: str) -> str:
    """An OSError in words ("connection refused"), without the address it carries."""
    code = error.errno
    if code is None or code == errno.EIO:
        return default
    return os.strerror(code).lower()
