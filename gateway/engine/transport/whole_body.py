"""An upstream answer read whole: bounded in size, its bytes counted, its JSON depth checked.

Both clients (aiohttp's and the lean HTTP/1.1 one) read whole answers this way; they differ
only in where the pieces come from and in when a Content-Length can be trusted up front.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

from gateway.engine.transport.upstream_errors import BodyTooDeep, BodyTooLarge
from wire.jsondepth import too_deep
from wire.upstream import Holder


async def read_whole(
    pieces: AsyncIterable[bytes],
    *,
    limit: int,
    announced: int | None,
    holder: Holder | None,
    content_type: str,
) -> bytes:
    """The body, at most `limit` bytes of it, or `BodyTooLarge`; `holder` counts its bytes
    (all of an `announced` length at once, before any is read). JSON nested deeper than
    the gateway reads is `BodyTooDeep`."""
    counted = 0
    if announced is not None:
        if announced > limit:
            raise BodyTooLarge(limit)
        if holder is not None:
            holder.take(announced)
            counted = announced
    # One buffer grown in place, each piece dropped as soon as it is copied: a list of
    # pieces joined at the end left the heap as large as the answers read at once.
    buffer = bytearray()
    async for piece in pieces:
        size = len(buffer) + len(piece)
        if size > limit:
            raise BodyTooLarge(limit)
        if holder is not None and size > counted:
            holder.take(size - counted)
            counted = size
        buffer += piece
    body = bytes(buffer)
    del buffer
    # Every provider decodes this answer, and some write parts of it again (orjson stops
    # at 254 levels): JSON is bounded here once, for all of them.
    if ("json" in content_type or body[:1] in (b"{", b"[")) and too_deep(body):
        raise BodyTooDeep()
    return body
