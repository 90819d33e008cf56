"""Upstream answers the gateway holds whole are bounded in memory, not only in bytes counted:
a gzip bomb (1 MiB inflating to 1 GiB) and a 300 MiB answer each leave the gateway's RSS
within 100 MiB of where it was, with the default max_upstream_bytes (64 MiB). What a failed
attempt held (the answer read so far, the request body sent) is freed at once, not at the next
full collection; and every answer held at once stays within `[server] max_held_bytes`.

The gateway runs as its own process so that its resident memory can be read on its own; the
peak is sampled while the answer arrives. Nothing here calls the garbage collector: a cycle
it would break is what the tests look for."""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import aiohttp
import anthropic
import openai
import orjson
import psutil
import pytest
from aiohttp import web

from bench.held_memory import LARGE, large_answer, serve_large
from formats.chat.from_chat import ChatStreamWriter
from formats.translator import EventTranslator
from gateway.server.heap import LARGE_BODY, TRIM_AFTER, HeapTrimmer
from tests.conftest import Connect, FakeUpstream, GatewayFactory, provider_toml
from tests.processes import GatewayProcess, peak_growth
from tests.streams import Handler, chat_completion
from wire.errors import UpstreamProtocolError

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


# --- failed attempts free their bodies; answers held at once are bounded in sum ---

SETTLED = 150 * MB  # the gateway's RSS once a run is over (it starts near 50 MiB)


@pytest.fixture
async def failing_upstream() -> AsyncIterator[str]:
    app = web.Application()
    app[LARGE] = large_answer(24 * MB)
    app.router.add_post("/huge/chat/completions", _huge)
    app.router.add_post("/large/chat/completions", serve_large)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def failing_gateway(failing_upstream: str, tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    gateway = GatewayProcess(
        "[server]\naccess_log = false\n"
        f"max_upstream_bytes = {32 * MB}\nmax_held_bytes = {HELD_LIMIT}\n"
        f'[providers.huge]\ntype = "openai"\nbase_url = "{failing_upstream}/huge"\n'
        f'[providers.large]\ntype = "openai"\nbase_url = "{failing_upstream}/large"\n'
        f'[providers.nobody]\ntype = "openai"\nbase_url = "http://127.0.0.1:{_unused_port()}"\n'
        "[providers.mock]\ndelay = 0\n",
        tmp_path,
    )
    yield gateway.url, gateway.process.pid
    gateway.stop()


HELD_LIMIT = 96 * MB


async def _settled_rss(pid: int, seconds: float = 10.0) -> int:
    """The process's RSS once it fell under SETTLED, or where it stood after `seconds`: the
    memory freed is given back to the system a moment after a burst (gateway.server.heap)."""
    process = psutil.Process(pid)
    rss = process.memory_info().rss
    for _ in range(int(seconds / 0.1)):
        if rss < SETTLED:
            break
        await asyncio.sleep(0.1)
        rss = process.memory_info().rss
    return int(rss)


async def _warm(session: aiohttp.ClientSession, url: str) -> None:
    body = {"model": "mock/m", "messages": MESSAGES}
    async with session.post(f"{url}/v1/chat/completions", json=body) as response:
        assert response.status == 200


async def test_answers_over_the_limit_are_freed_when_their_attempts_fail(
    failing_gateway: tuple[str, int],
) -> None:
    """30 answers each read up to max_upstream_bytes (32 MiB) and dropped: without the fix
    each stayed held (traceback, exception chain, the run's failures) until a full
    collection, about 1 GiB here."""
    url, pid = failing_gateway
    async with aiohttp.ClientSession() as session:
        await _warm(session, url)
        for _ in range(30):
            body = {"model": "huge/m", "messages": MESSAGES}
            async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                answer = orjson.loads(await response.read())
            assert response.status == 502
            assert answer["error"]["code"] == "upstream_too_large"
        rss = await _settled_rss(pid)
    print(f"\n30 answers over the limit: RSS after {rss / MB:.0f} MiB")
    assert rss < SETTLED, f"RSS {rss / MB:.0f} MiB after the run"


async def test_large_requests_to_an_unreachable_provider_are_freed(
    failing_gateway: tuple[str, int],
) -> None:
    """20 requests of 31 MiB, 10 at a time, each failing to connect: their bodies (as read,
    as parsed, as sent) are freed with them; nor does an idle kept-alive connection keep its
    last request's body."""
    url, pid = failing_gateway
    content = "x" * (31 * MB)
    body = orjson.dumps({"model": "nobody/m", "messages": [{"role": "user", "content": content}]})
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        await _warm(session, url)

        async def ask() -> None:
            async with session.post(
                f"{url}/v1/chat/completions", data=body, headers=headers
            ) as response:
                answer = orjson.loads(await response.read())
            assert response.status == 502
            assert answer["error"]["code"] == "upstream_unreachable"

        for _ in range(2):
            await asyncio.gather(*(ask() for _ in range(10)))
        rss = await _settled_rss(pid)  # the ten connections still open, idle
    print(f"\n20 requests of 31 MiB to an unreachable provider: RSS after {rss / MB:.0f} MiB")
    assert rss < SETTLED, f"RSS {rss / MB:.0f} MiB after the run"


async def test_answers_held_at_once_stay_within_max_held_bytes(
    failing_gateway: tuple[str, int],
) -> None:
    """12 answers of 24 MiB asked at once, with max_held_bytes = 96 MiB: at most four held
    at a time; the others are 503s in OpenAI's shape (not retried), and the peak RSS grows by
    the limit plus one answer's copy at most (without the limit: 600 MiB and more)."""
    url, pid = failing_gateway
    statuses: list[int] = []
    async with aiohttp.ClientSession() as session:
        await _warm(session, url)

        async def ask() -> None:
            body = {"model": "large/m", "messages": MESSAGES}
            async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                raw = await response.read()
            statuses.append(response.status)
            if response.status == 200:
                assert len(raw) > 24 * MB
                assert orjson.loads(raw)["choices"][0]["message"]["content"] == "a" * 24 * MB
            else:
                assert response.status == 503, raw[:300]
                assert orjson.loads(raw)["error"]["code"] == "gateway_memory_full"
                assert response.headers["Retry-After"] == "1"

        async def all_at_once() -> None:
            await asyncio.gather(*(ask() for _ in range(12)))

        growth = await peak_growth(pid, all_at_once)
        rss = await _settled_rss(pid)
    print(f"\n12 answers of 24 MiB at once: peak RSS growth {growth / MB:.0f} MiB, {statuses}")
    assert statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
    assert growth < HELD_LIMIT + 32 * MB + 16 * MB, f"RSS grew {growth / MB:.0f} MiB"
    assert rss < SETTLED, f"RSS {rss / MB:.0f} MiB after the run"


# --- past max_held_bytes: a 503 in the route's own shape, neither retried nor failed over ---


def _holding_first(body: bytes, holding: asyncio.Event, go_on: asyncio.Event) -> Handler:
    """The first answer announces its length, sends 10 bytes and waits for `go_on`: the
    gateway holds it (its whole length counted). Later answers come at once."""
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        if calls == 1:
            await response.write(body[:10])
            holding.set()
            await go_on.wait()
            await response.write(body[10:])
        else:
            await response.write(body)
        await response.write_eof()
        return response

    return handler


HELD_TOML = "[server]\nmax_upstream_bytes = 4096\nmax_held_bytes = 4096\n"
PADDED = "x" * 2500  # an answer of about 3 KB: one fits in 4096 bytes, two do not


async def test_an_answer_past_max_held_bytes_is_an_openai_503_not_retried(
    upstream: FakeUpstream, connect: Connect
) -> None:
    holding, go_on = asyncio.Event(), asyncio.Event()
    upstream.handler = _holding_first(orjson.dumps(chat_completion(PADDED)), holding, go_on)
    client = await connect(
        HELD_TOML + provider_toml(upstream.url, retries=2) + provider_toml(upstream.url, "spare")
    )
    fallbacks = {"fallbacks": ["spare/m"]}
    first = asyncio.create_task(
        client.chat.completions.create(model="fake/m", messages=MESSAGES, extra_body=fallbacks)
    )
    await holding.wait()
    with pytest.raises(openai.InternalServerError) as refused:
        await client.chat.completions.create(
            model="fake/m", messages=MESSAGES, extra_body=fallbacks
        )
    go_on.set()
    answer = await first
    assert answer.choices[0].message.content == PADDED
    assert refused.value.status_code == 503
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "gateway_memory_full"
    assert "max_held_bytes" in error["message"]
    assert refused.value.response.headers["Retry-After"] == "1"
    assert len(upstream.requests) == 2  # neither retried nor sent to the fallback


async def test_an_answer_past_max_held_bytes_is_an_anthropic_overloaded_error(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    holding, go_on = asyncio.Event(), asyncio.Event()
    upstream.handler = _holding_first(orjson.dumps(chat_completion(PADDED)), holding, go_on)
    url = await start_gateway(HELD_TOML + provider_toml(upstream.url))
    claude = anthropic.AsyncAnthropic(base_url=url, api_key="unused", max_retries=0)
    messages: Any = [{"role": "user", "content": "hi"}]
    try:
        first = asyncio.create_task(
            claude.messages.create(model="fake/m", max_tokens=10, messages=messages)
        )
        await holding.wait()
        with pytest.raises(anthropic.OverloadedError) as refused:
            await claude.messages.create(model="fake/m", max_tokens=10, messages=messages)
        go_on.set()
        answer = await first
    finally:
        await claude.close()
    assert answer.content[0].text == PADDED  # type: ignore[union-attr]
    assert refused.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": ANY},
    }
    assert "max_held_bytes" in refused.value.message


async def test_the_heap_is_trimmed_once_after_a_burst_of_large_bodies() -> None:
    """glibc keeps what was freed; `malloc_trim(0)` gives it back, once per burst (the
    processes above show the memory come back; here, how often the call is made)."""
    calls: list[int] = []

    def trim(pad: int) -> int:
        calls.append(pad)
        return 1

    trimmer = HeapTrimmer(trim, quiet=0)
    for _ in range(1000):
        trimmer.freed(LARGE_BODY - 1)  # small requests: never a trim
    await asyncio.sleep(0.05)  # a trim due would have run (quiet = 0)
    assert calls == []
    for _ in range(3):
        trimmer.freed(TRIM_AFTER // 2)
    for _ in range(200):
        if trimmer.trims:
            break
        await asyncio.sleep(0.01)
    await trimmer.close()
    assert calls == [0]


class _RefusingFraming:
    """A framing that refuses what it is fed, as one does an item past its bound."""

    pending = False

    def feed(self, data: bytes) -> list[bytes]:
        raise UpstreamProtocolError(f"an item of {len(data)} bytes is too large")


class _Translator(EventTranslator[bytes]):
    unit = "an item"
    terminal = "end"


def test_a_stream_failure_kept_by_its_translator_holds_no_frames() -> None:
    """The translator keeps its failure (the relay reads it, then the access log): raised
    through `feed`, its traceback held `feed`'s frame, the translator and the bytes fed."""
    translator = _Translator("p", ChatStreamWriter("m"), _RefusingFraming())
    out = translator.feed(b" " * MB)
    assert translator.finished and b"too large" in out
    assert translator.failure is not None
    assert translator.failure.__traceback__ is None
