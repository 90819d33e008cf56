"""Every wait on a client is timed, connections are capped, and a full file table or a
malformed request head is said in the log, once, without a traceback. Raw sockets throughout,
with small configured limits so that each test takes about a second."""

from __future__ import annotations

import asyncio
import logging
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import openai
import orjson
import psutil
import pytest
from aiohttp import web

from gateway.server import client_connection as connection
from gateway.server import log_throttle as throttle
from gateway.server.log_throttle import Throttled
from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.raw_requests import error_of
from tests.streams import openai_chat_stream, parse_sse, post_stream, streaming

CHAT = orjson.dumps({"model": "mock/m", "messages": [{"role": "user", "content": "hi"}]})
FAST = "header_timeout = 0.4\nbody_timeout = 0.4\nidle_timeout = 0.6\n"


def _request(body: bytes = CHAT, *, length: int | None = None) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body) if length is None else length}\r\n\r\n".encode()
        + body
    )


async def _connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length (all the gateway's answers here have one)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the gateway closes the connection (what it sends meanwhile is dropped)."""
    start = time.monotonic()
    async with asyncio.timeout(seconds):
        while await reader.read(65536):
            pass
    return time.monotonic() - start


def _error(body: bytes) -> dict[str, Any]:
    parsed = orjson.loads(body)
    assert set(parsed["error"]) == {"message", "type", "param", "code"}
    return parsed["error"]


@pytest.fixture
async def fast_url(start_gateway: GatewayFactory) -> str:
    return await start_gateway(f"[server]\n{FAST}[providers.mock]\ndelay = 0\n")


# --- the request head ---


async def test_a_silent_connection_is_closed_after_header_timeout(fast_url: str) -> None:
    reader, writer = await _connect(fast_url)
    took = await _closed_within(reader, 20)
    writer.close()
    assert 0.3 < took < 9  # the 0.4 s configured, not the 10 s default


async def _trickle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, interval: float
) -> tuple[int, dict[str, str], bytes]:
    """Send `data` a byte every `interval` seconds until the gateway answers; its answer."""

    async def send() -> None:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(interval)

    sender = asyncio.create_task(send())
    try:
        async with asyncio.timeout(20):
            return await _read_response(reader)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()


async def test_a_head_trickling_in_is_cut_with_a_408(fast_url: str) -> None:
    reader, writer = await _connect(fast_url)
    start = time.monotonic()
    status, headers, body = await _trickle(reader, writer, _request(), 0.1)
    assert 0.3 < time.monotonic() - start < 9  # long before the whole head trickled in
    assert status == 408 and headers["connection"] == "close" and headers["server"] == "gateway"
    assert _error(body)["code"] == "request_timeout"


async def test_the_head_timer_starts_at_the_first_byte_of_a_kept_alive_request(
    start_gateway: GatewayFactory,
) -> None:
    # Idle for 0.3 s between requests: over the 0.4 s head timeout in all, and far under the
    # idle timeout, so a loaded machine's late wake-up does not close the connection.
    url = await start_gateway(
        "[server]\nheader_timeout = 0.4\nidle_timeout = 20\n[providers.mock]\n"
    )
    reader, writer = await _connect(url)
    for _ in range(3):  # each request well within the head timeout, for longer than it in all
        writer.write(_request())
        status, _, _ = await _read_response(reader)
        assert status == 200
        await asyncio.sleep(0.3)
    writer.close()


# --- the request body ---


async def test_a_body_trickling_at_one_byte_per_interval_is_cut_with_a_408(fast_url: str) -> None:
    reader, writer = await _connect(fast_url)
    writer.write(_request(b"", length=len(CHAT)))
    start = time.monotonic()
    status, headers, body = await _trickle(reader, writer, CHAT, 0.15)
    assert status == 408 and headers["connection"] == "close"
    assert "bytes per second" in _error(body)["message"]
    assert 0.3 < time.monotonic() - start < 9  # long before the whole body trickled in


async def test_a_slow_but_steady_body_is_not_cut(start_gateway: GatewayFactory) -> None:
    # 120 bytes every 0.1 s: 1,200 bytes/s, five times the 240 the gateway asks for over each
    # 1 s window (a loaded machine that wakes the sender late still sends enough).
    url = await start_gateway("[server]\nbody_timeout = 1\n[providers.mock]\ndelay = 0\n")
    body = orjson.dumps({"model": "mock/m", "messages": [{"role": "user", "content": "x" * 3000}]})
    reader, writer = await _connect(url)
    writer.write(_request(b"", length=len(body)))
    for start in range(0, len(body), 120):  # about 2.6 s in all: two body timeouts
        writer.write(body[start : start + 120])
        await writer.drain()
        await asyncio.sleep(0.1)
    status, _, answer = await _read_response(reader)
    writer.close()
    assert status == 200, answer


async def test_an_upload_waiting_on_its_upstream_is_not_cut(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    """While the upstream does not read, the gateway stops reading the client: that time is
    not the client's slowness."""

    async def slow_reader(request: web.Request) -> web.Response:
        await asyncio.sleep(1.5)  # four body timeouts before the first byte is read
        size = sum([len(chunk) async for chunk in request.content.iter_any()])
        return web.json_response({"text": f"{size}"})

    upstream.handler = slow_reader
    url = await start_gateway(
        f'[server]\n{FAST}[providers.fake]\ntype = "openai"\nbase_url = "{upstream.url}"\n'
    )
    form = aiohttp.FormData()
    form.add_field("model", "fake/whisper-1")
    form.add_field("file", b"\0" * (8 * 1024 * 1024), filename="a.wav")
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/audio/transcriptions", data=form) as response,
    ):
        answer = await response.json()
    assert response.status == 200, answer
    assert int(answer["text"]) > 8 * 1024 * 1024


# --- idle keep-alive ---


async def test_an_idle_kept_alive_connection_is_closed_after_idle_timeout(fast_url: str) -> None:
    reader, writer = await _connect(fast_url)
    writer.write(_request())
    status, headers, _ = await _read_response(reader)
    assert status == 200 and headers.get("connection") != "close"
    took = await _closed_within(reader, 20)
    writer.close()
    assert 0.5 < took < 9  # the 0.6 s configured, not the 75 s default


# --- the connection cap ---


async def _hold(url: str, count: int) -> list[asyncio.StreamWriter]:
    """`count` connections served once and kept alive: the cap's worth."""
    held = []
    for _ in range(count):
        reader, writer = await _connect(url)
        writer.write(_request())
        async with asyncio.timeout(10):
            assert (await _read_response(reader))[0] == 200
        held.append(writer)
    return held


async def _answer_to(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """`request` sent whole on a new connection before anything is read; the answer, read
    within 10 s (before the fix, under uvloop: an empty reply or a hang)."""
    reader, writer = await _connect(url)
    try:
        writer.write(request)
        async with asyncio.timeout(10):
            return await _read_response(reader)
    finally:
        writer.close()


def _assert_refused(status: int, headers: dict[str, str], body: bytes, limit: int) -> None:
    assert status == 503 and headers["connection"] == "close"
    assert headers["server"] == "gateway"
    error = _error(body)
    assert error["code"] == "too_many_connections" and f"{limit} connections" in error["message"]


async def test_connections_past_max_connections_get_a_503_in_openai_shape(
    start_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    url = await start_gateway("[server]\nmax_connections = 3\n[providers.mock]\ndelay = 0\n")
    held = await _hold(url, 3)
    caplog.set_level(logging.WARNING)
    for _ in range(3):
        _assert_refused(*await _answer_to(url, _request()), limit=3)
    said = [r.getMessage() for r in caplog.records if "max_connections" in r.getMessage()]
    assert len(said) == 1, said  # once a minute, however many are refused
    held[0].close()
    await asyncio.sleep(0.1)
    status, _, _ = await _answer_to(url, _request())  # a freed slot serves again
    assert status == 200
    for other in held[1:]:
        other.close()


async def test_two_thousand_refusals_leave_the_listener_accepting(
    start_gateway: GatewayFactory,
) -> None:
    """Each refused client sends its request first and reads the whole 503; after them all,
    the listener still answers (before the fix, under uvloop, the first refusal failed and
    the next ended accepting for good)."""
    url = await start_gateway("[server]\nmax_connections = 2\n[providers.mock]\ndelay = 0\n")
    held = await _hold(url, 2)
    health = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    gate = asyncio.Semaphore(50)

    async def refused() -> None:
        async with gate:
            _assert_refused(*await _answer_to(url, health), limit=2)

    await asyncio.gather(*(refused() for _ in range(2000)))
    _assert_refused(*await _answer_to(url, health), limit=2)  # the cap is still full
    for writer in held:
        writer.close()
    await asyncio.sleep(0.1)
    status, _, body = await _answer_to(url, health)
    assert status == 200 and orjson.loads(body)["status"] == "ok"


async def test_the_openai_sdk_past_the_cap_gets_the_503_whole(
    start_gateway: GatewayFactory,
) -> None:
    """A chat request and an 8 MiB upload, each sent whole by the SDK before it reads: the
    refusal reads what they send, so no reset cuts the 503 they read after."""
    url = await start_gateway(
        "[server]\nmax_connections = 1\n[providers.mock]\ndelay = 0\n"
        '[providers.audio]\ntype = "mock"\n'
    )
    held = await _hold(url, 1)
    sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    upload = ("a.wav", b"\0" * (8 * 1024 * 1024))
    try:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: sdk.chat.completions.create(
                model="mock/m", messages=[{"role": "user", "content": "hi"}]
            ),
            lambda: sdk.audio.transcriptions.create(model="audio/whisper-1", file=upload),
        ]
        for call in calls:
            with pytest.raises(openai.InternalServerError) as caught:
                async with asyncio.timeout(10):
                    await call()
            assert caught.value.status_code == 503
            assert isinstance(caught.value.body, dict)
            assert caught.value.body["code"] == "too_many_connections"
    finally:
        await sdk.close()
        for writer in held:
            writer.close()


async def test_a_large_body_sent_whole_past_the_cap_still_reads_the_503(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway("[server]\nmax_connections = 1\n[providers.mock]\ndelay = 0\n")
    held = await _hold(url, 1)
    body = orjson.dumps({"model": "mock/m", "messages": [{"role": "user", "content": "x" * 2**23}]})
    _assert_refused(*await _answer_to(url, _request(body)), limit=1)
    for writer in held:
        writer.close()


# --- malformed request heads ---

CLIENT_HELLO = bytes.fromhex("160301020001000001fc0303") + b"\x8a" * 64


@pytest.mark.parametrize(
    ("head", "said"),
    [
        (CLIENT_HELLO, "HTTPS traffic on an HTTP port"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", "not valid HTTP"),
        (b"GARBAGE\r\n\r\n", "not valid HTTP"),
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", "not valid HTTP"),
    ],
)
async def test_a_malformed_head_is_a_400_in_openai_shape_logged_once_without_traceback(
    fast_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    head: bytes,
    said: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(connection, "_malformed", Throttled(connection.log))  # a fresh minute
    for _ in range(5):
        reader, writer = await _connect(fast_url)
        writer.write(head)
        status, headers, body = await _read_response(reader)
        writer.close()
        assert status == 400 and headers["server"] == "gateway"
        error = _error(body)
        assert error["type"] == "invalid_request_error" and said in error["message"]
    lines = [r for r in caplog.records if "malformed request" in r.getMessage()]
    assert len(lines) == 1  # at most once a minute
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_a_throttled_line_says_how_many_were_left_out(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]  # the throttle's own clock, moved by hand: no real sleep to race
    monkeypatch.setattr(throttle, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    throttled = Throttled(logging.getLogger("gateway"), interval=0.05)
    for _ in range(3):
        throttled.warning("something happened")
    clock[0] += 0.06
    throttled.warning("something happened")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "something happened; not logged again for 0.05 s",
        "something happened (2 more since the last such line); not logged again for 0.05 s",
    ]


# --- the open-file limit, in a gateway process of its own ---


def _gateway(
    tmp_path: Path, toml: str, nofile: tuple[int, int]
) -> tuple[subprocess.Popen[str], str]:
    config = tmp_path / "gateway.toml"
    config.write_text(toml)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile),
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "listening on" in line, process.stderr.read() if process.stderr else ""
    return process, line.split(" on ")[1].split()[0]


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    try:
        _, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
    return stderr


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard <= 1024:
        hard = 1024  # nothing to raise to: the limit stays, and is then checked below
    process, _ = _gateway(tmp_path, "[providers.mock]\n", (min(256, hard), hard))
    try:
        soft_now, _ = psutil.Process(process.pid).rlimit(psutil.RLIMIT_NOFILE)
    finally:
        _stop(process)
    assert soft_now == hard


def test_a_limit_too_low_for_max_connections_is_warned_about(tmp_path: Path) -> None:
    process, _ = _gateway(
        tmp_path, "[server]\nmax_connections = 1000\n[providers.mock]\n", (512, 512)
    )
    stderr = _stop(process)
    assert "max_connections = 1000 (configured)" in stderr  # kept as configured
    assert "the open-file limit is 512, low for max_connections = 1000" in stderr


async def test_past_the_open_file_limit_streams_are_refused_and_every_admitted_one_completes(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    """256 files: the default cap is sized to 64 (two files each, 128 kept), said at start.
    400 streams at once: each is served whole or refused with a clean 503, none fails for a
    file (before: clients took every file and their upstream connections failed; and
    refusals held at once must not take them either)."""
    tokens = ["a", "b", "c"]
    upstream.handler = streaming(openai_chat_stream(tokens), delay=0.7)
    toml = "[server]\naccess_log = false\n" + provider_toml(upstream.url, timeout=30)
    process, url = _gateway(tmp_path, toml, (256, 256))
    outcomes: list[str] = []

    async def one() -> None:
        async with asyncio.timeout(60):
            status, body = await post_stream(url, "fake/m")
        if status == 503 and error_of(body)["code"] == "too_many_connections":
            outcomes.append("refused")
            return
        events = parse_sse(body)
        said = "".join(
            orjson.loads(e.data)["choices"][0]["delta"].get("content", "")
            for e in events[:-1]
            if orjson.loads(e.data)["choices"]
        )
        complete = status == 200 and events[-1].data == "[DONE]" and said == "abc"
        outcomes.append("served" if complete else f"failed: {status} {body[-200:]!r}")

    try:
        await asyncio.gather(*(one() for _ in range(400)))
    finally:
        stderr = _stop(process)
    assert "max_connections = 64, sized from the open-file limit of 256" in stderr
    failed = [outcome for outcome in outcomes if outcome.startswith("failed")]
    assert not failed, failed[:3]
    assert outcomes.count("served") >= 64 and outcomes.count("refused") > 0
    assert "out of file descriptors" not in stderr and "Traceback" not in stderr


async def test_running_out_of_files_on_accept_is_logged_once_and_no_connection_is_reset(
    tmp_path: Path,
) -> None:
    # A cap set far above what 48 files serve (the default would be sized down to 1).
    toml = "[server]\nmax_connections = 4096\n[providers.mock]\ndelay = 0\n"
    process, url = _gateway(tmp_path, toml, (48, 48))
    try:
        # Past the limit, connections wait in the listen queue: the kernel completes them.
        held = [await _connect(url) for _ in range(60)]
        await asyncio.sleep(0.5)
        late_reader, late_writer = held[-1]
        late_writer.write(_request())
        with pytest.raises(TimeoutError):  # not served yet, and not reset either
            async with asyncio.timeout(0.5):
                await _read_response(late_reader)
        for _, writer in held[:30]:  # files free again: the queue is served
            writer.close()
        async with asyncio.timeout(10):
            status, _, _ = await _read_response(late_reader)
        assert status == 200
        for _, writer in held[30:]:
            writer.close()
    finally:
        stderr = _stop(process)
    lines = [line for line in stderr.splitlines() if "out of file descriptors" in line]
    assert len(lines) == 1, stderr
    assert "while accepting a connection" in lines[0]
    assert "Traceback" not in stderr
