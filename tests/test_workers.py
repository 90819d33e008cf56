"""Worker processes, restarts, graceful drain and readiness, as a deployment runs the gateway:
real `python -m gateway` processes on 127.0.0.1, stopped with real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import aiohttp
import orjson
import pytest

from tests.processes import GatewayProcess
from tests.streams import parse_sse
from wire.sse import Event

T = TypeVar("T")

MESSAGES = [{"role": "user", "content": "hi"}]
# 30 tokens 0.1 s apart: a 3-second stream.
SLOW_MOCK = '[providers.mock]\ntype = "mock"\ndelay = 0.1\ntokens = 30\n'


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for process in started:
        process.stop()


async def _health(url: str) -> dict[str, object]:
    # A new connection each time: the kernel hands it to any worker.
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
        session.get(f"{url}/health") as response,
    ):
        return dict(await response.json())


async def _eventually(ask: Callable[[], Awaitable[T]], want: T, within: float = 10.0) -> T:
    """What `ask` answers once it answers `want`, or its last answer after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        answer = await ask()
        if answer == want or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.05)


async def _ready_answer(probe: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> int:
    """GET /ready on the probe's connection, its body read too (the connection goes on)."""
    status = await _ready_on(probe)
    await probe[0].readuntil(b"}")
    return status


async def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


async def _pids(url: str, want: int, tries: int = 200) -> set[int]:
    pids: set[int] = set()
    for _ in range(tries):
        pid = (await _health(url))["pid"]
        assert isinstance(pid, int)
        pids.add(pid)
        if len(pids) >= want:
            break
    return pids


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_two_workers_serve_from_two_processes(
    tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    gateways.append(GatewayProcess(SLOW_MOCK, tmp_path, "--workers", "2"))
    pids = await _pids(gateways[0].url, 2)
    assert len(pids) == 2 and gateways[0].process.pid not in pids  # workers, not the supervisor


async def test_a_worker_that_dies_is_restarted_and_requests_keep_succeeding(
    tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    gateway = GatewayProcess(SLOW_MOCK, tmp_path, "--workers", "2")
    gateways.append(gateway)
    url = gateway.url
    before = await _pids(url, 2)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    statuses = []
    deadline = time.monotonic() + 15
    after: set[int] = set()
    while time.monotonic() < deadline and len(after - before) == 0:
        health = await _health(url)
        statuses.append(health["status"])
        after.add(int(health["pid"]))  # type: ignore[call-overload]
        await asyncio.sleep(0.05)
    assert set(statuses) == {"ok"}  # the other worker served meanwhile
    new = after - before
    assert len(new) == 1 and victim not in after  # a new worker took the dead one's place
    assert "restarting it" in gateway.stop()


async def _open_stream(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = "127.0.0.1", _port_of(url)
    reader, writer = await asyncio.open_connection(host, port)
    body = orjson.dumps({"model": "mock/x", "messages": MESSAGES, "stream": True})
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    return reader, writer


async def _stream_started(reader: asyncio.StreamReader) -> bytes:
    """Wait for the stream's first event; returns what was read of the answer so far."""
    return await asyncio.wait_for(reader.readuntil(b"data: "), 10)


async def _read_to_end(reader: asyncio.StreamReader, started: bytes) -> list[Event]:
    raw = started + await asyncio.wait_for(reader.read(), 30)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    # De-chunk: the events are what a client reads.
    data, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        data, rest = data + rest[:size], rest[size + 2 :]
    return parse_sse(data)


async def _ready_on(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> int:
    reader, writer = connection
    writer.write(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    return int(status_line.split()[1])


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_sigterm_lets_a_running_stream_finish_and_refuses_new_connections(
    tmp_path: Path, gateways: list[GatewayProcess], workers: str
) -> None:
    gateway = GatewayProcess(SLOW_MOCK, tmp_path, "--workers", workers)
    gateways.append(gateway)
    port = _port_of(gateway.url)
    # A connection opened before the drain: a readiness probe asks on it during the drain.
    probe = await asyncio.open_connection("127.0.0.1", port)
    assert await _ready_on(probe) == 200
    await probe[0].readuntil(b"}")  # the rest of that answer
    reader, writer = await _open_stream(gateway.url)
    started = await _stream_started(reader)
    gateway.process.send_signal(signal.SIGTERM)
    if workers == "1":
        # Draining. (With several workers the probe's may have drained and closed already.)
        assert await _eventually(lambda: _ready_answer(probe), 503) == 503
    # A new connection is refused (once the signal reached every process: polled, not timed).
    assert await _eventually(lambda: _refused(port), True)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    events = await _read_to_end(reader, started)
    writer.close()
    assert events[-1].data == "[DONE]"  # the stream finished whole
    text = "".join(
        (orjson.loads(e.data)["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for e in events[:-1]
    )
    assert len(text.split()) == 30
    assert gateway.process.wait(20) == 0


async def test_a_stream_longer_than_drain_timeout_ends_with_the_error_event(
    tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    gateway = GatewayProcess("[server]\ndrain_timeout = 0.5\n" + SLOW_MOCK, tmp_path)
    gateways.append(gateway)
    reader, writer = await _open_stream(gateway.url)
    started = await _stream_started(reader)
    gateway.process.send_signal(signal.SIGTERM)
    events = await _read_to_end(reader, started)
    writer.close()
    last = orjson.loads(events[-1].data)
    assert last["error"]["code"] == "gateway_shutting_down"
    assert all(e.data != "[DONE]" for e in events)
    assert gateway.process.wait(20) == 0


async def test_a_second_signal_stops_at_once(
    tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    gateway = GatewayProcess("[server]\ndrain_timeout = 60\n" + SLOW_MOCK, tmp_path)
    gateways.append(gateway)
    reader, writer = await _open_stream(gateway.url)
    started = await _stream_started(reader)
    gateway.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    signalled = time.monotonic()
    gateway.process.send_signal(signal.SIGINT)
    events = await _read_to_end(reader, started)
    writer.close()
    assert orjson.loads(events[-1].data)["error"]["code"] == "gateway_shutting_down"
    assert gateway.process.wait(20) == 1
    assert time.monotonic() - signalled < 10  # not the 60 s drain


def test_several_workers_with_local_limits_refuse_to_start(tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text(SLOW_MOCK + '[keys.app]\nvalue = "sk-app"\nrpm = 10\n')
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert "redis_url" in lines[-1] and "keys.app" in lines[-1]


async def test_metrics_of_every_worker_are_summed(
    tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    gateway = GatewayProcess(
        '[providers.mock]\ntype = "mock"\ndelay = 0\n', tmp_path, "--workers", "2"
    )
    gateways.append(gateway)
    body = {"model": "mock/x", "messages": MESSAGES}
    served: set[int] = set()
    sent = 0
    # A new connection each time (the kernel hands it to whichever worker accepts first: on a
    # busy machine one may take dozens in a row), until both served, 400 at most; /health on
    # the same connection names the worker that served the request.
    while sent < 40 or (len(served) < 2 and sent < 400):
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{gateway.url}/v1/chat/completions", json=body) as r:
                assert r.status == 200
            sent += 1
            async with session.get(f"{gateway.url}/health") as r:
                served.add(int((await r.json())["pid"]))

    async def counted() -> float:
        async with aiohttp.ClientSession() as session, session.get(f"{gateway.url}/metrics") as r:
            text = await r.text()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("gen_ai_server_request_duration_seconds_count{")
            and 'gen_ai_operation_name="chat"' in line
        )

    assert len(served) == 2
    # One scrape of one worker shows the requests both served (folded within 50 ms: polled).
    assert await _eventually(counted, sent) == sent


# --- the accept loop's watchdog: a listener broken on purpose, in a real process ---

# Put on PYTHONPATH, it breaks the listener's `accept` in the first gateway process that accepts
# (the one that creates the claim file): its second call (the accept after the first
# connection) raises, is cancelled or hangs; "...-always" breaks every call after the first.
BREAK_ACCEPT = """
import asyncio
import os

import gateway.server.listener as listener

_accept = listener.accept
_mode = os.environ["BREAK_ACCEPT"]
_calls = 0
_broken = None


async def accept(sock):
    global _calls, _broken
    if _broken is None:
        try:
            os.close(os.open(os.environ["BREAK_ACCEPT_CLAIM"], os.O_CREAT | os.O_EXCL))
            _broken = True
        except FileExistsError:
            _broken = False
    _calls += 1
    if _broken and (_calls == 2 or (_calls > 2 and _mode.endswith("always"))):
        if _mode.startswith("raise"):
            raise RuntimeError("accept broken on purpose")
        if _mode.startswith("cancel"):
            asyncio.current_task().cancel()
            await asyncio.sleep(0)
        await asyncio.Event().wait()  # hang
    return await _accept(sock)


listener.accept = accept
"""


def _broken_accept(tmp_path: Path, mode: str) -> dict[str, str]:
    """The environment that breaks the accept loop of the first gateway process to accept."""
    (tmp_path / "sitecustomize.py").write_text(BREAK_ACCEPT)
    claim = str(tmp_path / "broken-accept.claim")
    return {"PYTHONPATH": str(tmp_path), "BREAK_ACCEPT": mode, "BREAK_ACCEPT_CLAIM": claim}


async def _health_within(url: str, seconds: float) -> dict[str, object]:
    """GET /health on a new connection, answered within `seconds` (else TimeoutError)."""
    async with asyncio.timeout(seconds):
        return await _health(url)


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("raise", "accepting a connection failed"),
        ("cancel", "was cancelled: restarted"),
        ("hang", "waited: restarted"),  # "took no connection for 3 s while 1 waited"
    ],
)
async def test_a_broken_accept_loop_is_logged_and_accepting_goes_on(
    tmp_path: Path, gateways: list[GatewayProcess], mode: str, said: str
) -> None:
    """An error out of accept is logged and accepting goes on; an accept loop that ends, or
    that takes no connection while one waits, is restarted by the watchdog. Before, each
    ended accepting for good, silently, and the process lived on."""
    gateway = GatewayProcess(SLOW_MOCK, tmp_path, env=_broken_accept(tmp_path, mode))
    gateways.append(gateway)
    assert (await _health_within(gateway.url, 10))["status"] == "ok"  # the first accept
    for _ in range(3):  # the next waits in the listen queue until the loop is mended
        assert (await _health_within(gateway.url, 20))["status"] == "ok"
    stderr = gateway.stop()
    lines = [line for line in stderr.splitlines() if said in line]
    assert len(lines) == 1, stderr
    if mode == "raise":
        assert "RuntimeError: accept broken on purpose" in stderr  # its traceback, once
        assert "restarted" not in stderr  # the loop itself went on


async def test_a_worker_whose_accept_loop_cannot_be_mended_exits_and_is_restarted(
    tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    """One of two workers: its accept loop is cancelled after each restart. After three, it
    drains and exits 1, the supervisor starts a fresh worker, and the other serves meanwhile."""
    env = _broken_accept(tmp_path, "cancel-always")
    gateway = GatewayProcess(SLOW_MOCK, tmp_path, "--workers", "2", env=env)
    gateways.append(gateway)
    first = await _pids(gateway.url, 2)
    pids = set(first)
    deadline = time.monotonic() + 40
    while pids <= first and time.monotonic() < deadline:  # until a third worker answers
        health = await _health_within(gateway.url, 10)
        assert health["status"] == "ok"  # every request is served throughout
        pids.add(int(health["pid"]))  # type: ignore[call-overload]
        await asyncio.sleep(0.05)
    stderr = gateway.stop()
    assert len(pids - first) == 1, stderr
    assert "after 3 restarts that took no connection: this process stops" in stderr
    assert "exited with status 1; restarting it" in stderr
