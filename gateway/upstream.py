"""aiohttp's client for upstream requests (where the lean client, gateway.http1, does not go,
or for all with `[server] upstream_client = "aiohttp"`), and the error mapping both share.

aiohttp's exceptions stop here: `as_gateway_error` maps them (and the lean client's,
gateway.http1) to the gateway's own errors at this boundary (as httpcore's `map_exceptions`
does), so nothing else needs to know them.
"""

from __future__ import annotations

import asyncio
import errno
import os
import ssl
from collections.abc import AsyncIterator

import aiohttp
import orjson

from gateway.http1.errors import LeanError
from gateway.server import fdlimit
from wire.errors import (
    GatewayError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from wire.jsondepth import MAX_DEPTH, too_deep
from wire.upstream import Holder, Upstream, UpstreamRequest

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


class HttpUpstream:
    __slots__ = ("_limit", "_response", "content_type", "headers", "request_id", "status")

    def __init__(self, response: aiohttp.ClientResponse, limit: int = MAX_BODY_BYTES) -> None:
        self._response = response
        self._limit = limit
        self.status = response.status
        self.content_type = response.content_type
        self.headers = headers = response.headers
        # OpenAI and most compatible servers say x-request-id; Anthropic says request-id.
        self.request_id = headers.get("x-request-id") or headers.get("request-id")

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()

    async def read(self, holder: Holder | None = None) -> bytes:
        """The whole body, at most `limit` bytes of it once inflated, or `BodyTooLarge`;
        `holder` counts its bytes (a length announced up front, before any is read).

        aiohttp inflates a compressed body a bounded piece at a time (as the reader drains),
        so counting what comes out bounds a gzip bomb too.
        """
        response = self._response
        limit = self._limit
        length = response.content_length
        counted = 0
        if length is not None and not response.headers.get("Content-Encoding"):
            if length > limit:
                raise BodyTooLarge(limit)
            if holder is not None:
                holder.take(length)
                counted = length
        # One buffer grown in place, each chunk dropped as soon as it is copied: a list of
        # chunks joined at the end left the heap as large as the answers read at once.
        buffer = bytearray()
        async for chunk in response.content.iter_any():
            size = len(buffer) + len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            if holder is not None and size > counted:
                holder.take(size - counted)
                counted = size
            buffer += chunk
        body = bytes(buffer)
        del buffer
        # Every provider decodes this answer, and some write parts of it again (orjson stops
        # at 254 levels): JSON is bounded here once, for all of them.
        if ("json" in self.content_type or body[:1] in (b"{", b"[")) and too_deep(body):
            raise BodyTooDeep()
        return body

    async def finish(self, wait: float) -> None:
        # A server writes its last event and then the end of the chunked body, often in a
        # packet of its own: without this, every paced stream cost a fresh TCP connection.
        content = self._response.content
        if content.at_eof():
            return
        try:
            async with asyncio.timeout(wait):
                while await content.readany():
                    pass  # anything after the terminal event is not for the client
        except (TimeoutError, aiohttp.ClientError):
            pass  # close() drops the connection then

    def close(self) -> None:
        # A connection closed mid-body is what tells the upstream to stop generating.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class HttpTransport:
    """One pooled aiohttp client for every HTTP provider."""

    def __init__(self, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._max_body_bytes = max_body_bytes

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            # An upstream may compress its answer; the client always gets plain bytes.
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(
        self,
        request: UpstreamRequest,
        timeout: aiohttp.ClientTimeout,
        *,
        proxy: str | None = None,
        proxy_headers: dict[str, str] | None = None,
    ) -> Upstream:
        assert self._session is not None, "HttpTransport.start() was not awaited"
        response = await self._session.request(
            request.method,
            request.url,
            data=request.body,
            headers=request.headers,
            timeout=timeout,
            allow_redirects=False,
            proxy=proxy,
            proxy_headers=proxy_headers,
        )
        if 300 <= response.status < 400:
            response.close()
            raise RedirectRefused(response.status)
        return HttpUpstream(response, self._max_body_bytes)


def client_timeout(seconds: float, *, reads: bool = True) -> aiohttp.ClientTimeout:
    """The provider `timeout`: connecting, and (`reads`) waiting for headers and any silence
    between reads. Streams leave reads to `gateway.deadline`, which costs nothing per chunk."""
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
    if isinstance(exc, LeanError):  # the lean client's own (gateway.http1), in the same words
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
