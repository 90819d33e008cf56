"""Shared fixtures: a real fake upstream and the real gateway, both on 127.0.0.1 ephemeral ports,
and the official OpenAI SDK pointed at the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import openai
import orjson
import pytest
import uvloop
from aiohttp import web
from hypothesis import HealthCheck, settings

from gateway import app as gateway_app
from gateway.config import parse
from tests.redis_server import RedisServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# A skipped test proves nothing: any skip (or xfail) fails the run, here and in CI.
_SKIPPED: list[str] = []


# Hypothesis times its examples and its data generation: on a loaded machine (the suite must
# pass with both cores busy) those clocks fail sound tests. What the properties check is
# unchanged.
settings.register_profile(
    "suite", deadline=None, suppress_health_check=[HealthCheck.too_slow], parent=settings.default
)
settings.load_profile("suite")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Every async test and fixture runs on uvloop, the loop the gateway ships with: a
    server that works on asyncio's own loop may not on uvloop's (its transports differ)."""
    return {"uvloop": uvloop.new_event_loop}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SKIPPED and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\n{len(_SKIPPED)} test(s) skipped, which fails the run: " + ", ".join(_SKIPPED))


class FakeUpstream:
    """An OpenAI-compatible server whose answer each test scripts by setting `handler`.

    It records every request (path, headers, JSON body) and whether a handler was cancelled
    because the gateway closed the connection.
    """

    def __init__(self) -> None:
        self.handler: Handler = self._unset
        self.requests: list[dict[str, Any]] = []
        self.closed_by_peer = asyncio.Event()  # a handler saw its connection go away
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)  # uploads read by handlers
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # handler_cancellation: a handler is cancelled when the gateway drops the connection.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        # Uploads are left for the handler to read, as a real server reads them: streamed.
        raw = b"" if request.content_type.startswith("multipart/") else await request.read()
        self.requests.append(
            {
                "path": request.path,
                "peer": request.transport.get_extra_info("peername") if request.transport else None,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": orjson.loads(raw) if raw else None,
            }
        )
        try:
            return await self.handler(request)
        except (asyncio.CancelledError, ConnectionResetError):
            self.closed_by_peer.set()
            raise

    @staticmethod
    async def _unset(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "no handler scripted"}}, status=500)

    @property
    def last_body(self) -> dict[str, Any]:
        return self.requests[-1]["body"]


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def upstreams() -> AsyncIterator[list[FakeUpstream]]:
    """Three independent fake upstreams: a, b, c."""
    servers = [FakeUpstream() for _ in range(3)]
    for server in servers:
        await server.start()
    yield servers
    for server in servers:
        await server.stop()


GatewayFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def start_gateway() -> AsyncIterator[GatewayFactory]:
    """Start the real gateway on an ephemeral port from TOML text; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(toml: str) -> str:
        runner, url = await gateway_app.start(parse(toml, "test.toml"), "127.0.0.1", 0)
        runners.append(runner)
        return url

    yield start
    for runner in runners:
        await runner.cleanup()


def provider_toml(
    upstream_url: str, name: str = "fake", *, type: str = "openai", **settings: Any
) -> str:
    """A `[providers.NAME]` table of `type` on the fake upstream, with `settings`."""
    lines = [f"[providers.{name}]", f'type = "{type}"', f'base_url = "{upstream_url}"']
    lines += [f"{key} = {orjson.dumps(value).decode()}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
async def gateway_url(upstream: FakeUpstream, start_gateway: GatewayFactory) -> str:
    """The gateway with one OpenAI-compatible provider `fake` -> the fake upstream, and mock."""
    return await start_gateway(
        provider_toml(upstream.url, api_key="sk-upstream", timeout=2)
        + '[providers.mock]\ntype = "mock"\ndelay = 0\n'
    )


@pytest.fixture
async def mock_url(start_gateway: GatewayFactory) -> str:
    """The gateway with only the built-in mock provider (no pause between tokens)."""
    return await start_gateway("[providers.mock]\ndelay = 0\n")


@pytest.fixture
async def connect(start_gateway: GatewayFactory) -> AsyncIterator[Connect]:
    """Start the gateway from TOML text; the official SDK pointed at it (closed after)."""
    clients: list[openai.AsyncOpenAI] = []

    async def connect(toml: str) -> openai.AsyncOpenAI:
        url = await start_gateway(toml)
        clients.append(openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0))
        return clients[-1]

    yield connect
    for client in clients:
        await client.close()


Connect = Callable[[str], Awaitable[openai.AsyncOpenAI]]


@pytest.fixture
async def client(gateway_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="sk-client", max_retries=0)
    yield sdk
    await sdk.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session (started on first use)."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    redis_server.flush()
    return redis_server.url
