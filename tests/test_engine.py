"""The engine's contract with what is plugged into it: it asks the policies through its ports
and tells its event hooks of every request it took, however the request ended, with no
middleware of the app's in between."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.config import parse
from gateway.engine.call import Call, Prepared, natively
from gateway.engine.dispatcher import Dispatcher
from gateway.engine.events import Attempt, RequestRecord
from gateway.engine.held import HeldBytes
from gateway.engine.targets import Candidate
from gateway.engine.transport.upstream_client import UpstreamClient
from gateway.policy.cooldowns import LocalCooldowns
from gateway.policy.routing import Router
from providers.base import Provider
from wire.errors import GatewayError
from wire.operations import Operation

CONFIG = parse('[providers.mock]\ntype = "mock"\ndelay = 0\ntokens = 3\n', "test.toml")


class Recorder:
    """Event hooks that keep what they were told."""

    def __init__(self) -> None:
        self.ended: list[RequestRecord] = []

    def attempt_started(self, record: RequestRecord, attempt: Attempt) -> None:
        pass

    def first_content(self, record: RequestRecord, attempt: Attempt) -> None:
        pass

    def attempt_ended(self, record: RequestRecord, attempt: Attempt) -> None:
        pass

    def request_ended(self, record: RequestRecord) -> None:
        self.ended.append(record)


class Caller:
    name = "team"

    def check_models(self, names: list[str], param: str = "model") -> None:
        pass


class Refusing:
    """Limits that refuse every request, as a key past its rpm does."""

    def __init__(self) -> None:
        self.settled: list[Any] = []
        self.records: list[RequestRecord] = []

    def caller(self, request: web.Request) -> Caller:
        return Caller()

    def client_key(self, request: web.Request) -> str | None:
        return None

    async def admit(self, request: web.Request, call: Call, plan: Sequence[Candidate]) -> str:
        raise GatewayError("Rate limit reached for key 'team'.", status=429)

    def rate_headers(self, admission: str) -> dict[str, str]:
        return {}

    def settle(self, admission: str, record: RequestRecord) -> None:
        self.settled.append(admission)
        self.records.append(record)


class Admitting(Refusing):
    async def admit(self, request: web.Request, call: Call, plan: Sequence[Candidate]) -> str:
        return "admitted"


@pytest.fixture
async def engine() -> AsyncIterator[tuple[str, Recorder, dict[str, Any]]]:
    """A bare aiohttp app whose one route hands a chat request to a dispatcher: no observers'
    middleware, no error middleware. The test picks the limits plugged in."""
    recorder = Recorder()
    plugged: dict[str, Any] = {}
    http = UpstreamClient()
    await http.start()

    async def chat(request: web.Request) -> web.StreamResponse:
        def prepare(provider: Provider, model: str) -> Prepared:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            return natively(provider, Operation.CHAT, model, body, False)

        dispatcher = Dispatcher(
            Router(CONFIG, http),
            LocalCooldowns(),
            CONFIG.routing,
            plugged["limits"],
            HeldBytes(1 << 20),
            hooks=[recorder],
        )
        try:
            return await dispatcher.dispatch(
                request, Call(Operation.CHAT, "mock/m", False, prepare)
            )
        except GatewayError as error:
            return web.Response(status=error.status, text=error.message)

    app = web.Application()
    app.router.add_post("/chat", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/chat", recorder, plugged
    await runner.cleanup()
    await http.close()


async def test_a_request_its_limits_refuse_is_reported_ended_once_by_the_engine(
    engine: tuple[str, Recorder, dict[str, Any]],
) -> None:
    url, recorder, plugged = engine
    plugged["limits"] = limits = Refusing()
    async with aiohttp.ClientSession() as session, session.post(url, json={}) as response:
        assert response.status == 429
    assert len(recorder.ended) == 1
    record = recorder.ended[0]
    assert record.status == 429 and record.key == "team" and record.ended is not None
    assert record.attempts == [] and limits.settled == []


async def test_an_answered_request_is_reported_ended_once_and_settled_with_its_usage(
    engine: tuple[str, Recorder, dict[str, Any]],
) -> None:
    url, recorder, plugged = engine
    plugged["limits"] = limits = Admitting()
    async with aiohttp.ClientSession() as session, session.post(url, json={}) as response:
        assert response.status == 200
        await response.read()
    assert len(recorder.ended) == 1 and limits.settled == ["admitted"]
    assert limits.records == recorder.ended  # settled with the record the observers saw
    usage = recorder.ended[0].usage
    assert usage is not None and usage.output == 3
