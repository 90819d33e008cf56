"""Real nginx in front of real gateway processes, configured with exactly the README's block
("Deploying", "Behind nginx"): only its two `server` addresses and its `listen` line are
replaced, by the gateways' and a loopback port here.

- A stream arrives token by token: the fake upstream sends its next token only after the
  client has read the one before, through nginx and the gateway. A buffering hop anywhere
  would hold the first token back, and the stream would never finish.
- A drain behind it loses nothing: one of the two gateways gets SIGTERM while streams run
  through nginx and requests keep arriving; every stream finishes whole and every request is
  answered 200 (the other gateway takes what the draining one refuses), with no traceback
  and no error in nginx's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.conftest import FakeUpstream
from tests.processes import GatewayProcess
from tests.streams import chat_chunk, data

README = Path(__file__).resolve().parent.parent / "README.md"
MESSAGES = [{"role": "user", "content": "hi"}]


def readme_nginx_block() -> str:
    """The README's nginx block, as a user copies it."""
    text = README.read_text()
    section = text[text.index("**Behind nginx**") :]
    found = re.search(r"```nginx\n(.*?)```", section, re.S)
    assert found is not None, "README: no nginx block under 'Behind nginx'"
    return found.group(1)


def nginx_conf(block: str, servers: list[str], port: int, directory: Path) -> str:
    """A whole nginx.conf around the README's block: its upstream servers and its listen line
    replaced, everything else as written."""
    lines = block.splitlines()
    server_lines = [i for i, line in enumerate(lines) if re.match(r"\s*server\s+\S+:\d+;", line)]
    assert len(server_lines) == len(servers), block
    for i, address in zip(server_lines, servers, strict=True):
        lines[i] = re.sub(r"server\s+\S+;", f"server {address};", lines[i])
    listens = [i for i, line in enumerate(lines) if line.strip().startswith("listen ")]
    assert len(listens) == 1, block
    lines[listens[0]] = f"    listen 127.0.0.1:{port};"
    temp = {name: directory / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    return "\n".join(
        [
            "daemon off;",
            "worker_processes 1;",
            f"pid {directory / 'nginx.pid'};",
            f"error_log {directory / 'error.log'} warn;",
            "events { worker_connections 1024; }",
            "http {",
            "    access_log off;",
            *(f"    {name}_temp_path {path};" for name, path in temp.items()),
            *("    " + line for line in lines),
            "}",
        ]
    )


class Nginx:
    def __init__(self, conf: str, directory: Path, port: int) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        assert Path(binary).exists(), "nginx (Debian's nginx; .ci/run installs it)"
        path = directory / "nginx.conf"
        path.write_text(conf)
        self.error_log = directory / "error.log"
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [binary, "-p", str(directory), "-c", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                assert self.process.stderr is not None
                raise RuntimeError(f"nginx did not start: {self.process.stderr.read()!r}")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def processes() -> Iterator[list[GatewayProcess | Nginx]]:
    started: list[GatewayProcess | Nginx] = []
    yield started
    for process in reversed(started):
        process.stop()


def _address(gateway: GatewayProcess) -> str:
    return gateway.url.removeprefix("http://")


def test_the_readme_block_keeps_the_clients_host() -> None:
    # nginx sends its upstream's name (`gateway`) as Host otherwise, which a gateway
    # listening on loopback answers 421.
    assert "proxy_set_header Host $host;" in readme_nginx_block()


async def test_a_stream_arrives_through_nginx_token_by_token(
    upstream: FakeUpstream, tmp_path: Path, processes: list[GatewayProcess | Nginx]
) -> None:
    tokens = [f"t{i}" for i in range(5)]
    read: list[asyncio.Event] = [asyncio.Event() for _ in tokens]

    async def lockstep(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(data(chat_chunk({"role": "assistant", "content": ""})))
        for i, token in enumerate(tokens):
            await response.write(data(chat_chunk({"content": token})))
            # The next token only once the client has read this one, through both hops.
            await asyncio.wait_for(read[i].wait(), 10)
        await response.write(data(chat_chunk({}, "stop")) + b"data: [DONE]\n\n")
        return response

    upstream.handler = lockstep
    toml = f'[providers.fake]\ntype = "openai"\nbase_url = "{upstream.url}"\napi_key = "k"\n'
    gateways = [GatewayProcess(toml, tmp_path / f"g{i}") for i in range(2)]
    processes.extend(gateways)
    port = _free_port()
    conf = nginx_conf(readme_nginx_block(), [_address(g) for g in gateways], port, tmp_path)
    nginx = Nginx(conf, tmp_path, port)
    processes.append(nginx)
    await nginx.wait_ready()
    body = {"model": "fake/m", "stream": True, "messages": MESSAGES}
    seen: list[str] = []
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{nginx.url}/v1/chat/completions", json=body) as response,
    ):
        assert response.status == 200, await response.text()
        buffer = b""
        async for chunk in response.content.iter_any():
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                payload = event.removeprefix(b"data: ")
                if payload == b"[DONE]":
                    continue
                choices = orjson.loads(payload)["choices"]
                content = choices[0]["delta"].get("content") if choices else None
                if content:
                    seen.append(content)
                    read[len(seen) - 1].set()
    assert seen == tokens


async def _stream(session: aiohttp.ClientSession, url: str) -> int:
    """Tokens of one streamed answer through `url`; -1 if it did not end with [DONE]."""
    body = {"model": "mock/slow", "stream": True, "messages": MESSAGES}
    async with session.post(f"{url}/v1/chat/completions", json=body) as response:
        assert response.status == 200, await response.text()
        raw = await response.read()
    if not raw.rstrip().endswith(b"data: [DONE]"):
        return -1
    return raw.count(b'"content":"') - raw.count(b'"content":""')


@contextlib.asynccontextmanager
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


async def test_a_drain_behind_nginx_loses_nothing(
    tmp_path: Path, processes: list[GatewayProcess | Nginx]
) -> None:
    # 20 tokens 0.1 s apart: 2-second streams; the drain has time for every one of them.
    toml = "[server]\ndrain_timeout = 30\n[providers.mock]\ndelay = 0.1\ntokens = 20\n"
    gateways = [GatewayProcess(toml, tmp_path / f"g{i}") for i in range(2)]
    processes.extend(gateways)
    port = _free_port()
    conf = nginx_conf(readme_nginx_block(), [_address(g) for g in gateways], port, tmp_path)
    nginx = Nginx(conf, tmp_path, port)
    processes.append(nginx)
    await nginx.wait_ready()
    async with _session() as session:
        streams = [asyncio.create_task(_stream(session, nginx.url)) for _ in range(20)]
        await asyncio.sleep(0.5)  # every stream under way, on both gateways
        gateways[0].process.send_signal(signal.SIGTERM)
        # Requests keep arriving while it drains: nginx's pooled connections to it included.
        later = [asyncio.create_task(_stream(session, nginx.url)) for _ in range(20)]
        tokens = await asyncio.gather(*streams, *later)
    assert tokens == [20] * 40
    stderr = gateways[0].stop()
    assert gateways[0].process.returncode == 0
    assert "Traceback" not in stderr
    log = nginx.error_log.read_text() if nginx.error_log.exists() else ""
    assert "upstream prematurely closed" not in log, log


async def _hammer(url: str, stop: asyncio.Event, warm: asyncio.Event, seen: list[int]) -> None:
    """Quick POSTs one after another through nginx (its pooled, kept-alive connections to
    the gateways carry them) until `stop`: each whole answer's token count, or -1."""
    body = {"model": "mock/quick", "stream": True, "messages": MESSAGES}
    async with _session() as session:
        while not stop.is_set():
            async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                raw = await response.read()
            whole = response.status == 200 and raw.rstrip().endswith(b"data: [DONE]")
            seen.append(raw.count(b'"content":"') - raw.count(b'"content":""') if whole else -1)
            if len(seen) >= 200:
                warm.set()


async def test_a_drain_behind_nginx_under_a_hammer_of_posts_loses_nothing(
    tmp_path: Path, processes: list[GatewayProcess | Nginx]
) -> None:
    """POSTs arrive on nginx's kept-alive connections to a gateway at the instant of its
    SIGTERM: each is served there (its answer closes the connection) or, once the listener
    is closed, refused and sent by nginx to the other gateway. Before, nginx answered 502 to
    one the draining gateway ran to the end and logged 200, with a traceback."""
    toml = "[server]\ndrain_timeout = 30\n[providers.mock]\ndelay = 0.005\ntokens = 3\n"
    gateways = [GatewayProcess(toml, tmp_path / f"g{i}") for i in range(2)]
    processes.extend(gateways)
    port = _free_port()
    conf = nginx_conf(readme_nginx_block(), [_address(g) for g in gateways], port, tmp_path)
    nginx = Nginx(conf, tmp_path, port)
    processes.append(nginx)
    await nginx.wait_ready()
    stop, warm, seen = asyncio.Event(), asyncio.Event(), list[int]()
    clients = [asyncio.create_task(_hammer(nginx.url, stop, warm, seen)) for _ in range(16)]
    await asyncio.wait_for(warm.wait(), 60)
    gateways[0].process.send_signal(signal.SIGTERM)
    await asyncio.sleep(2)  # past the drain's grace for idle connections
    stop.set()
    await asyncio.gather(*clients)
    log = nginx.error_log.read_text() if nginx.error_log.exists() else ""
    assert set(seen) == {3}, (seen.count(-1), log)  # every answer 200 and whole
    assert await asyncio.to_thread(gateways[0].process.wait, 30) == 0
    stderr = gateways[0].stop()
    assert "Traceback" not in stderr and '"status":499' not in stderr, stderr[-3000:]
    assert "prematurely closed" not in log and "reset by peer" not in log, log
