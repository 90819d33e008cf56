"""aiohttp's client for upstream requests: where the lean client (`transport.http1`) does not
go, or for all with `[server] upstream_client = "aiohttp"`. Its exceptions are mapped to the
gateway's errors by `gateway.engine.transport.upstream_errors`, as the lean client's are.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp

from gateway.engine.transport.upstream_errors import (
    MAX_BODY_BYTES,
    RedirectRefused,
)
from gateway.engine.transport.whole_body import read_whole
from wire.upstream import Holder, Upstream, UpstreamRequest


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
        length = response.content_length
        return await read_whole(
            response.content.iter_any(),
            limit=self._limit,
            announced=None if response.headers.get("Content-Encoding") else length,
            holder=holder,
            content_type=self.content_type,
        )

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
