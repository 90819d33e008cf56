"""Upstream answers the gateway holds whole are bounded in memory, not only in bytes counted:
a gzip bomb (1 MiB inflating to 1 GiB) and a 300 MiB answer each leave the gateway's RSS
within 100 MiB of where it was, with the default max_upstream_bytes (64 MiB).

The gateway runs as its own process so that its resident memory can be read on its own; the
peak is sampled while the answer arrives."""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.processes import GatewayProcess, peak_growth

MB = 1024 * 1024
ALLOWED_GROWTH = 100 * MB
MESSAGES = [{"role": "user", "content": "hi"}]
BOMB = web.AppKey("bomb", bytes)


def _gzip_bomb(inflated: int) -> bytes:
    """`inflated` bytes of JSON-looking spaces as one gzip member of about a thousandth of
    that. Each MiB is deflated after a full flush, so its bytes are the same every time:
    one MiB is compressed, and repeated (RFC 1952: header, deflate data, CRC-32, size)."""
    piece = b" " * MB
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = packer.compress(piece) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(piece) + packer.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(inflated // MB):
        crc = zlib.crc32(piece, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, inflated & 0xFFFFFFFF)
    return header + first + again * (inflated // MB - 1) + packer.flush() + trailer


def test_the_bomb_is_what_it_says() -> None:
    bomb = _gzip_bomb(64 * MB)
    assert len(bomb) < 100 * 1024 and gzip.decompress(bomb) == b" " * (64 * MB)


async def _bomb(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[BOMB],
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )


async def _huge(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    piece = b" " * (256 * 1024)
    try:
        for _ in range(300 * MB // len(piece)):
            await response.write(piece)
    except ConnectionError:
        pass  # the gateway let go at its limit
    return response


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _gzip_bomb(1024 * MB)


@pytest.fixture
async def large_upstream(bomb: bytes) -> AsyncIterator[str]:
    app = web.Application()
    app[BOMB] = bomb
    app.router.add_post("/bomb/chat/completions", _bomb)
    app.router.add_post("/huge/chat/completions", _huge)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.fixture
async def gateway_process(large_upstream: str, tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    gateway = GatewayProcess(
        f'[providers.bomb]\ntype = "openai"\nbase_url = "{large_upstream}/bomb"\n'
        f'[providers.huge]\ntype = "openai"\nbase_url = "{large_upstream}/huge"\n'
        "[providers.mock]\ndelay = 0\n",
        tmp_path,
    )
    yield gateway.url, gateway.process.pid
    gateway.stop()


@pytest.mark.parametrize("provider", ["bomb", "huge"])
async def test_an_answer_too_large_to_hold_leaves_memory_bounded(
    gateway_process: tuple[str, int], provider: str
) -> None:
    url, pid = gateway_process
    async with aiohttp.ClientSession() as session:
        warm = {"model": "mock/m", "messages": MESSAGES}
        async with session.post(f"{url}/v1/chat/completions", json=warm) as response:
            assert response.status == 200  # imports, buffers and pools are set up

        async def ask() -> None:
            body = {"model": f"{provider}/m", "messages": MESSAGES}
            async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                answer = orjson.loads(await response.read())
            assert response.status == 502
            assert answer["error"]["code"] == "upstream_too_large"
            assert f"'{provider}'" in answer["error"]["message"]

        growth = await peak_growth(pid, ask)
    assert growth < ALLOWED_GROWTH, f"RSS grew {growth / MB:.1f} MiB"
    print(f"\n{provider}: peak RSS growth {growth / MB:.1f} MiB")
