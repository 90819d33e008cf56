"""An upstream request, its answer, what sends it, and an upload streamed into it.

A provider builds an `UpstreamRequest`; a `Transport` sends it (the gateway's pooled HTTP
client, or the mock provider answering in-process) and gives back an `Upstream`, the answer
once its headers are in. An `Upload` is a client's multipart form that a provider re-frames for
its upstream while the client is still sending it (gateway.server.multipart_upload reads it).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Protocol

import aiohttp
import msgspec

from wire.operations import Operation


class UpstreamRequest(msgspec.Struct, frozen=True, gc=False):
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | AsyncIterable[bytes]  # an iterable is streamed (uploads), never held whole
    # What the request asks, for a transport that answers in-process by it (the mock).
    operation: Operation | None = None


class Holder(Protocol):
    """Counts the bytes of an answer held whole (gateway.engine.held), across every request."""

    def take(self, size: int) -> None:
        """`size` more bytes are held; raises a GatewayError (a 503) when that is too many."""
        ...


class Upstream(Protocol):
    """An upstream's answer once its headers are in."""

    @property
    def status(self) -> int: ...

    @property
    def content_type(self) -> str: ...

    @property
    def request_id(self) -> str | None:
        """The upstream's id for this request, relayed as x-request-id."""
        ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk as it arrives."""
        ...

    async def read(self, holder: Holder | None = None) -> bytes:
        """The whole body, its bytes counted by `holder` as they arrive."""
        ...

    async def finish(self, wait: float) -> None:
        """The last event is out: give the body up to `wait` seconds to end, so that `close`
        can pool the connection rather than drop it."""
        ...

    def close(self) -> None:
        """Give the connection back if the body was read to the end, else close it at once."""
        ...


class Transport(Protocol):
    async def send(self, request: UpstreamRequest, timeout: aiohttp.ClientTimeout) -> Upstream: ...


class Upload(Protocol):
    """A client's multipart form (transcription, translation), its file still being sent."""

    @property
    def content_type(self) -> str:
        """The multipart Content-Type of `body`, with its boundary."""
        ...

    def value(self, name: str) -> str | None:
        """A form field read so far (the fields before the file part)."""
        ...

    def body(self, model: str) -> AsyncIterator[bytes]:
        """The upstream's multipart body, its `model` field set to `model`."""
        ...
