"""Reload on SIGHUP, as an operator does it (systemd's ExecReload, `kill -HUP`): real
`python -m gateway` processes on 127.0.0.1, with streams running through the reload."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.processes import GatewayProcess
from tests.streams import parse_sse

# 20 tokens 0.1 s apart: 2-second streams, running while the reload happens.
SLOW_MOCK = '[providers.mock]\ntype = "mock"\ndelay = 0.1\ntokens = 20\n'
# The change: an alias that the first config does not have, and a gateway key renamed.
WITH_ALIAS = SLOW_MOCK + '\n[models.fresh]\ntargets = ["mock/x"]\n'
STREAMS = 200


@pytest.fixture
def gateways() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for process in started:
        process.stop()


async def _stream(session: aiohttp.ClientSession, url: str, started: asyncio.Event) -> str:
    """One whole stream of model mock/x: its text (it must end with [DONE])."""
    body = {"model": "mock/x", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with session.post(f"{url}/v1/chat/completions", json=body) as response:
        assert response.status == 200
        raw = b""
        async for chunk in response.content.iter_any():
            raw += chunk
            started.set()
    events = parse_sse(raw)
    assert events[-1].data == "[DONE]", events[-1].data
    return "".join(
        (orjson.loads(e.data)["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for e in events[:-1]
    )


async def _status_of(url: str, model: str) -> int:
    """A new connection each time (with workers, the kernel hands it to any of them)."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(f"{url}/v1/chat/completions", json=body) as response,
    ):
        await response.read()
        return response.status


async def _hammer(url: str, stop: asyncio.Event, statuses: list[int]) -> None:
    """New connections, one after another, all through the reload: none may be refused."""
    while not stop.is_set():
        statuses.append(await _status_of(url, "mock/quick"))


async def _until_answers(url: str, model: str, want: int, tries: int = 600) -> None:
    for _ in range(tries):
        if await _status_of(url, model) == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{model} never answered {want}")


def _metrics_dirs(directory: Path) -> list[Path]:
    return list(directory.glob("gateway-metrics-*"))


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_sighup_with_a_changed_file_serves_it_and_every_stream_finishes(
    tmp_path: Path, gateways: list[GatewayProcess], workers: str
) -> None:
    gateway = GatewayProcess(SLOW_MOCK, tmp_path, "--workers", workers)
    gateways.append(gateway)
    assert await _status_of(gateway.url, "fresh") != 200  # not configured yet
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = [asyncio.Event() for _ in range(STREAMS)]
        streams = [asyncio.create_task(_stream(session, gateway.url, event)) for event in started]
        async with asyncio.timeout(60):
            await asyncio.gather(*(event.wait() for event in started))
        stop, statuses = asyncio.Event(), []
        hammer = asyncio.create_task(_hammer(gateway.url, stop, statuses))
        gateway.config.write_text(WITH_ALIAS)
        gateway.process.send_signal(signal.SIGHUP)
        await _until_answers(gateway.url, "fresh", 200)  # the new config answers
        texts = await asyncio.gather(*streams)
        stop.set()
        await hammer
    assert all(len(text.split()) == 20 for text in texts)  # every stream whole
    assert statuses and set(statuses) == {200}  # nothing refused, nothing failed
    assert gateway.process.poll() is None  # still serving
    log = gateway.stop()
    assert "aliases added: fresh" in log
    assert "Traceback" not in log and "Unhandled exception" not in log


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_an_invalid_file_is_refused_and_the_old_config_serves_on(
    tmp_path: Path, gateways: list[GatewayProcess], workers: str
) -> None:
    gateway = GatewayProcess(WITH_ALIAS, tmp_path, "--workers", workers)
    gateways.append(gateway)
    gateway.config.write_text(SLOW_MOCK + "\n[models.broken]\ntargets = 7\n")
    gateway.process.send_signal(signal.SIGHUP)
    while "reload refused" not in (line := await gateway.next_line(20)):
        pass
    assert "targets" in line and str(gateway.config) in line
    assert await _status_of(gateway.url, "fresh") == 200  # the old config, alias and all
    assert gateway.process.poll() is None
    assert "Traceback" not in gateway.stop()


async def test_what_needs_a_restart_is_said_and_kept(
    tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    gateway = GatewayProcess("[server]\nworkers = 1\n" + SLOW_MOCK, tmp_path)
    gateways.append(gateway)
    gateway.config.write_text("[server]\nworkers = 3\nport = 1\n" + WITH_ALIAS)
    gateway.process.send_signal(signal.SIGHUP)
    while "reload of" not in (line := await gateway.next_line(20)):
        pass
    assert "aliases added: fresh" in line
    assert "[server] port 1 needs a restart" in line
    assert "[server] workers 3 needs a restart: 1 kept" in line
    await _until_answers(gateway.url, "fresh", 200)
    assert gateway.process.poll() is None


async def test_sighup_no_longer_kills_the_gateway_nor_leaves_its_metrics_behind(
    tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    gateway = GatewayProcess(SLOW_MOCK, tmp_path, "--workers", "2", env={"TMPDIR": str(tmp_path)})
    gateways.append(gateway)
    assert _metrics_dirs(tmp_path)  # the workers' shared directory
    gateway.process.send_signal(signal.SIGHUP)
    while "reloaded" not in await gateway.next_line(30):
        pass
    assert gateway.process.poll() is None
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(30) == 0
    assert not _metrics_dirs(tmp_path)


async def test_gateway_reload_signals_the_gateway_named_by_its_pid_file(
    tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    pid_file = tmp_path / "gateway.pid"
    gateway = GatewayProcess(SLOW_MOCK, tmp_path, "--pid-file", str(pid_file))
    gateways.append(gateway)
    gateway.config.write_text(WITH_ALIAS)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "reload", "--pid-file", str(pid_file)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert f"SIGHUP sent to {gateway.process.pid}" in done.stdout
    await _until_answers(gateway.url, "fresh", 200)
    gateway.stop()
    assert not pid_file.exists()  # removed at exit
