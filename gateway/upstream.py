"""Sending a provider's request: the one place that touches the upstream's socket.

aiohttp's exceptions stop here: `as_gateway_error` maps them to the gateway's own errors at this
boundary (as httpcore's `map_exceptions` does), so nothing else needs to know them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import aiohttp

from gateway.errors import GatewayError, UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable
from providers.base import UpstreamRequest


class Upstream(Protocol):
    """An upstream's answer once its headers are in."""

    status: int
    content_type: str
    request_id: str | None  # the upstream's id for this request, relayed as x-request-id
    headers: Mapping[str, str]

    def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk as it arrives."""
        ...

    async def read(self) -> bytes: ...

    async def finish(self, wait: float) -> None:
        """The last event is out: give the body up to `wait` seconds to end, so that `close`
        can pool the connection rather than drop it."""
        ...

    def close(self) -> None:
        """Give the connection back if the body was read to the end, else close it at once."""
        ...


class Transport(Protocol):
    async def send(self, request: UpstreamRequest, timeout: aiohttp.ClientTimeout) -> Upstream: ...


class HttpUpstream:
    __slots__ = ("_response", "content_type", "headers", "request_id", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.content_type = response.content_type
        self.headers = headers = response.headers
        # OpenAI and most compatible servers say x-request-id; Anthropic says request-id.
        self.request_id = headers.get("x-request-id") or headers.get("request-id")

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()

    async def read(self) -> bytes:
        return await self._response.read()

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

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

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

    async def send(self, request: UpstreamRequest, timeout: aiohttp.ClientTimeout) -> Upstream:
        assert self._session is not None, "HttpTransport.start() was not awaited"
        response = await self._session.request(
            request.method,
            request.url,
            data=request.body,
            headers=request.headers,
            timeout=timeout,
        )
        return HttpUpstream(response)


def client_timeout(seconds: float, *, reads: bool = True) -> aiohttp.ClientTimeout:
    """The provider `timeout`: connecting, and (`reads`) waiting for headers and any silence
    between reads. Streams leave reads to `gateway.deadline`, which costs nothing per chunk."""
    return aiohttp.ClientTimeout(
        total=None, sock_connect=seconds, sock_read=seconds if reads else None
    )


def as_gateway_error(exc: BaseException, provider: str, timeout: float) -> GatewayError | None:
    """The gateway error for an exception raised while talking to an upstream, or None."""
    # A gateway error raised inside aiohttp (an upload found too large while it is streamed)
    # comes back wrapped in a client error: the cause is the answer.
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, GatewayError):
            return cause
        cause = cause.__cause__
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts subclass it
        return UpstreamTimeout(
            f"Provider {provider!r} sent nothing for {timeout:g} seconds (its timeout)."
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnreachable(f"Cannot connect to provider {provider!r}: {exc}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamUnreachable(
            f"The connection to provider {provider!r} broke mid-answer: {exc}"
        )
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamProtocolError(f"Provider {provider!r} sent an invalid response: {exc}")
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamUnreachable(f"The connection to provider {provider!r} failed: {exc!r}")
    return None
