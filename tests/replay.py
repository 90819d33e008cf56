"""Replaying a provider's captured wire bytes from a real fake upstream, cut at random bytes.

Fixtures live in tests/fixtures/<provider>/ exactly as the provider sends them; which doc page
each follows is listed in tests/fixtures/README.md (a comment inside would change the bytes).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from aiohttp import web

from tests.conftest import Handler

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(path: str) -> bytes:
    return (FIXTURES / path).read_bytes()


def random_pieces(raw: bytes, seed: int, max_piece: int = 48) -> list[bytes]:
    """`raw` cut at random byte positions (reproducible from `seed`); joined, they are `raw`."""
    rng = random.Random(seed)
    pieces, at = [], 0
    while at < len(raw):
        size = rng.randint(1, max_piece)
        pieces.append(raw[at : at + size])
        at += size
    return pieces


def replay(
    raw: bytes,
    *,
    seed: int = 0,
    status: int = 200,
    content_type: str = "text/event-stream",
    max_piece: int = 48,
) -> Handler:
    """A handler that sends `raw` in random pieces, each its own write (and TCP segment)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
        await response.prepare(request)
        for piece in random_pieces(raw, seed, max_piece):
            await response.write(piece)
            await asyncio.sleep(0)  # let each piece go out on its own
        return response

    return handler
