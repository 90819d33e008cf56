"""A drain under load, with no race: a real `python -m gateway` gets SIGTERM while requests
keep arriving, on new connections and on kept-alive ones, just before, at and after the
signal. A request the gateway accepted is served to the end (or, past `drain_timeout`, ends
with the drain's error event); one that arrives after gets a connection error before any byte
of an answer. Never a traceback, never a 499, and every answer the gateway logged as 200 was
received whole by its client."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.processes import GatewayProcess

# Streams of 5 tokens 10 ms apart: many requests start and end around the signal.
QUICK_MOCK = "[server]\ndrain_timeout = 20\n[providers.mock]\ndelay = 0.01\ntokens = 5\n"
BODY = {"model": "mock/x", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
CLIENTS = 24  # half on kept-alive connections, half on a new connection each time
WARM = 200  # whole answers before the signal
AFTER_SIGNAL = 1.5  # seconds clients keep sending once the signal is sent


async def _one(session: aiohttp.ClientSession, url: str) -> str:
    """One streamed request: "whole", "cut" (the drain's error event) or "refused" (a
    connection error before any byte of an answer)."""
    try:
        async with session.post(f"{url}/v1/chat/completions", json=BODY) as response:
            assert response.status == 200, await response.text()
            raw = await response.read()
    except (aiohttp.ClientConnectionError, OSError) as exc:
        assert not isinstance(exc, aiohttp.ClientPayloadError), exc  # an answer cut short
        return "refused"
    if raw.rstrip().endswith(b"data: [DONE]"):
        assert raw.count(b'"content":"') - raw.count(b'"content":""') == 5
        return "whole"
    last = raw.rstrip().rsplit(b"data: ", 1)[-1]
    assert orjson.loads(last)["error"]["code"] == "gateway_shutting_down", raw[-300:]
    return "cut"


async def _client(
    url: str, kept_alive: bool, stop: asyncio.Event, seen: Counter[str], warm: asyncio.Event
) -> None:
    connector = aiohttp.TCPConnector(force_close=not kept_alive, limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        while not stop.is_set():
            outcome = await _one(session, url)
            seen[outcome] += 1
            if seen["whole"] >= WARM:
                warm.set()
            if outcome == "refused":
                await asyncio.sleep(0.01)


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_sigterm_under_load_serves_what_it_accepted_and_refuses_the_rest(
    tmp_path: Path, workers: str
) -> None:
    gateway = GatewayProcess(QUICK_MOCK, tmp_path, "--workers", workers)
    try:
        stop, warm, seen = asyncio.Event(), asyncio.Event(), Counter[str]()
        clients = [
            asyncio.create_task(_client(gateway.url, i % 2 == 0, stop, seen, warm))
            for i in range(CLIENTS)
        ]
        await asyncio.wait_for(warm.wait(), 60)  # under way, every connection busy
        gateway.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(AFTER_SIGNAL)
        stop.set()
        await asyncio.gather(*clients)
        status = await asyncio.to_thread(gateway.process.wait, 30)
    finally:
        log = gateway.stop()
    assert status == 0, log[-3000:]
    assert seen["refused"] > 0  # requests did arrive after the listener closed
    assert "Traceback" not in log and "Unhandled exception" not in log, log[-3000:]
    logged = Counter(
        orjson.loads(line)["status"] for line in log.splitlines() if line.startswith("{")
    )
    assert 499 not in logged, logged
    # Every request the gateway answered 200 reached its client whole (or with the error
    # event): none was run and then lost on the way.
    assert logged[200] == seen["whole"] + seen["cut"], (logged, seen)
    assert "drain started" in log and "drain ended" in log and "gateway exits" in log


async def _post_on(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = orjson.dumps(BODY)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    return reader, writer


async def test_connections_waiting_in_the_listen_queue_at_sigterm_are_served(
    tmp_path: Path,
) -> None:
    """The kernel completes a connection's handshake before the gateway accepts it: a client
    (a proxy) then sends its request. Those still in the listen queue when the drain starts
    are served, not reset by the socket's close (nginx answered 502 to such a POST)."""
    gateway = GatewayProcess(QUICK_MOCK, tmp_path)
    try:
        port = int(gateway.url.rsplit(":", 1)[1])
        gateway.process.send_signal(signal.SIGSTOP)  # accepts nothing: they queue
        waiting = [await _post_on(port) for _ in range(50)]
        gateway.process.send_signal(signal.SIGTERM)
        gateway.process.send_signal(signal.SIGCONT)
        answers = [await asyncio.wait_for(reader.read(), 30) for reader, _ in waiting]
        for _, writer in waiting:
            writer.close()
        status = await asyncio.to_thread(gateway.process.wait, 30)
    finally:
        log = gateway.stop()
    assert status == 0, log[-3000:]
    assert all(a.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in a for a in answers), [
        a[:60] for a in answers if b"data: [DONE]" not in a
    ]
    # Those answered once the drain had begun say so (the connection closes after them).
    assert any(b"Connection: close" in a for a in answers)
    assert "Traceback" not in log
